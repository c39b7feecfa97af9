//! What is measured: the server's request counters (the check count) and
//! a process's memory and CPU from `/proc` (read by `testkit::procfs`).

use testkit::procfs;

/// The server's request counters (`GET /metrics`).
pub(crate) struct Metrics {
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
}

impl Metrics {
    pub(crate) async fn count(&self, endpoint: &str, result: &str) -> anyhow::Result<u64> {
        let text = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let key =
            format!("peach_dyndns_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }
}

/// What `/proc` says about a process, and the check count at that moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Checks so far (the server's `/ip` count, averaged around the read).
    pub(crate) checks: u64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) anon_kib: u64,
    pub(crate) file_kib: u64,
    pub(crate) threads: u64,
    /// utime + stime, milliseconds (10 ms resolution).
    pub(crate) cpu_ms: f64,
    /// CPU time of the living threads from `schedstat`, nanoseconds.
    pub(crate) sched_ns: u64,
}

/// Reads `/proc/<pid>` between two reads of the server's check count
/// (`endpoint` answered with `outcome`: the daemon's `/ip` is `signed`,
/// inadyn's plain `ok`).
pub(crate) async fn sample(
    metrics: &Metrics,
    pid: u32,
    (endpoint, outcome): (&str, &str),
) -> anyhow::Result<Sample> {
    let before = metrics.count(endpoint, outcome).await?;
    let status = procfs::Status::read(Some(pid))?;
    let cpu_seconds = procfs::cpu_seconds(Some(pid))?;
    let sched_ns = procfs::sched_ns(Some(pid))?;
    let after = metrics.count(endpoint, outcome).await?;
    Ok(Sample {
        checks: (before + after) / 2,
        rss_kib: status.value("VmRSS:")?,
        hwm_kib: status.value("VmHWM:")?,
        anon_kib: status.value("RssAnon:")?,
        file_kib: status.value("RssFile:")?,
        threads: status.value("Threads:")?,
        cpu_ms: cpu_seconds * 1000.0,
        sched_ns,
    })
}
