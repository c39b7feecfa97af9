//! What is measured: the server's request counters (the check count) and
//! a process's memory and CPU from `/proc`.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

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

/// Reads `/proc/<pid>` between two reads of the server's check count.
pub(crate) async fn sample(metrics: &Metrics, pid: u32, endpoint: &str) -> anyhow::Result<Sample> {
    let before = metrics.count(endpoint, "ok").await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let mut sched_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let text = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        sched_ns += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let after = metrics.count(endpoint, "ok").await?;
    let field = |key: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {key}"))
    };
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15, and the rest starts at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Ok(Sample {
        checks: (before + after) / 2,
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        threads: field("Threads:")?,
        cpu_ms: ticks as f64 * 1000.0 / clock_ticks(),
        sched_ns,
    })
}

/// Resident KiB per mapping (file and permissions, or `[heap]`, …), the
/// largest first; mappings under 8 KiB are summed as "other".
pub(crate) fn smaps_breakdown(pid: u32) -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by_mapping: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // `start-end perms offset dev inode [path]`
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("[anonymous]");
            let name = Path::new(path)
                .file_name()
                .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
            current = format!("{name} {perms}");
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            match by_mapping.iter_mut().find(|(m, _)| *m == current) {
                Some((_, total)) => *total += kib,
                None => by_mapping.push((current.clone(), kib)),
            }
        }
    }
    by_mapping.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    let other: u64 = by_mapping
        .iter()
        .filter(|(_, k)| *k < 8)
        .map(|(_, k)| k)
        .sum();
    by_mapping.retain(|(_, k)| *k >= 8);
    by_mapping.push(("other".into(), other));
    Ok(by_mapping)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
