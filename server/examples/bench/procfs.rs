//! CPU time and resident memory of a process, read from `/proc` (std
//! only: the workspace forbids `unsafe`, so no `getrusage`).

use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context as _;

/// Clock ticks per second of the utime/stime fields of `/proc/<pid>/stat`
/// (`getconf CLK_TCK`; Linux exports 100 on every architecture we run on).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of this process (all threads, living and
/// exited) or of `pid`.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // fields after it are plain. utime and stime are fields 14 and 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no ')' in {text:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize, name: &str| -> anyhow::Result<f64> {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("{path}: no {name} field"))
    };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let ticks = field(14 - 3, "utime")? + field(15 - 3, "stime")?;
    Ok(ticks / clock_ticks())
}

/// This process's resident memory now and at its peak, KiB (`VmRSS`,
/// `VmHWM` of `/proc/self/status`).
pub fn rss_kb() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let value = |key: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/self/status has no {key}"))
    };
    Ok((value("VmRSS:")?, value("VmHWM:")?))
}

/// CPU seconds the whole machine spent busy and idle so far, summed over
/// every core (the first line of `/proc/stat`). Busy counts steal too:
/// time the hypervisor gave to other guests is time we did not get.
pub fn machine_seconds() -> anyhow::Result<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no `cpu` line")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user and nice).
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let idle = at(3) + at(4);
    Ok((busy / clock_ticks(), idle / clock_ticks()))
}

/// Resets this process's peak resident memory (`VmHWM`) to the current
/// value, so a later [`rss_kb`] gives the peak of what came in between
/// (`echo 5 > /proc/self/clear_refs`, Linux 4.0 and later).
pub fn reset_peak() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("writing /proc/self/clear_refs")
}
