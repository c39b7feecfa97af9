//! What `/proc` says about a process and the machine, for the benchmarks:
//! CPU time, resident memory, threads' run time, where the memory is, and
//! the machine's model and load. std only (the workspace forbids `unsafe`,
//! so no `getrusage`); Linux only, like the Pis.
//!
//! A `pid` of `None` means this process (`/proc/self`).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// What `getconf CLK_TCK` gives when it cannot run: Linux exports 100 on
/// every architecture we run on.
const DEFAULT_CLOCK_TICKS: f64 = 100.0;
/// Mappings with less resident memory than this (KiB) are summed as
/// "other" by [`smaps_breakdown`], so the list stays short.
const SMAPS_MIN_KIB: u64 = 8;

/// `/proc/self` or `/proc/<pid>`.
fn dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    }
}

/// Reads a `/proc` file, with the path in the error.
fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {path}"), e))
}

/// Clock ticks per second of the time fields of `/proc/<pid>/stat` and
/// `/proc/stat` (`getconf CLK_TCK`, asked once).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(DEFAULT_CLOCK_TICKS)
    })
}

/// User + system CPU seconds of a process, all its threads, living and
/// exited (utime + stime of `/proc/<pid>/stat`; 10 ms resolution).
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = format!("{}/stat", dir(pid));
    let text = read(&path)?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // fields after it are plain. utime and stime are fields 14 and 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::unexpected(&path, format!("no ')' in {text:?}")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize, name: &str| -> Result<f64> {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| Error::unexpected(&path, format!("no {name} field")))
    };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let ticks = field(14 - 3, "utime")? + field(15 - 3, "stime")?;
    Ok(ticks / clock_ticks())
}

/// `/proc/<pid>/status`, read once, asked key by key.
#[derive(Debug, Clone)]
pub struct Status {
    /// Where it was read, for messages.
    path: String,
    /// The file's text.
    text: String,
}

impl Status {
    /// Reads `/proc/<pid>/status` now.
    pub fn read(pid: Option<u32>) -> Result<Status> {
        let path = format!("{}/status", dir(pid));
        let text = read(&path)?;
        Ok(Status { path, text })
    }

    /// The number of a line such as `VmRSS:  1234 kB` or `Threads:  3`;
    /// `key` with its colon, e.g. `"VmRSS:"`. Sizes are in KiB.
    pub fn value(&self, key: &str) -> Result<u64> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| Error::unexpected(&self.path, format!("no {key}")))
    }
}

/// This process's resident memory now and at its peak, KiB (`VmRSS` and
/// `VmHWM` of `/proc/self/status`; [`Status`] reads another's).
pub fn rss_kb() -> Result<(u64, u64)> {
    let status = Status::read(None)?;
    Ok((status.value("VmRSS:")?, status.value("VmHWM:")?))
}

/// Resets this process's peak resident memory (`VmHWM`) to the current
/// value, so a later [`rss_kb`] gives the peak of what came in between
/// (`echo 5 > /proc/self/clear_refs`, Linux 4.0 and later).
pub fn reset_peak() -> Result<()> {
    let path = "/proc/self/clear_refs";
    std::fs::write(path, "5").map_err(|e| Error::io(format!("writing {path}"), e))
}

/// Run time of a process's living threads, nanoseconds: the first field
/// of each `/proc/<pid>/task/<tid>/schedstat`, summed. Finer than
/// [`cpu_seconds`], but threads that exited are not counted. A thread that
/// exits while being read counts as 0.
pub fn sched_ns(pid: Option<u32>) -> Result<u64> {
    let tasks = format!("{}/task", dir(pid));
    let entries =
        std::fs::read_dir(&tasks).map_err(|e| Error::io(format!("listing {tasks}"), e))?;
    let mut total = 0u64;
    for task in entries {
        let task = task.map_err(|e| Error::io(format!("listing {tasks}"), e))?;
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total = total.saturating_add(
            text.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0),
        );
    }
    Ok(total)
}

/// Resident KiB per mapping of a process (`<file name> <perms>`, or
/// `[heap]`, `[stack]`, `[anonymous]` …), the largest first, from
/// `/proc/<pid>/smaps`; mappings under 8 KiB are summed as `other`, last.
pub fn smaps_breakdown(pid: Option<u32>) -> Result<Vec<(String, u64)>> {
    let text = read(&format!("{}/smaps", dir(pid)))?;
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
        .filter(|(_, k)| *k < SMAPS_MIN_KIB)
        .map(|(_, k)| k)
        .sum();
    by_mapping.retain(|(_, k)| *k >= SMAPS_MIN_KIB);
    by_mapping.push(("other".into(), other));
    Ok(by_mapping)
}

/// CPU seconds the whole machine spent busy and idle so far, summed over
/// every core (the first line of `/proc/stat`). Busy counts steal too:
/// time the hypervisor gave to other guests is time we did not get.
pub fn machine_seconds() -> Result<(f64, f64)> {
    let path = "/proc/stat";
    let text = read(path)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| Error::unexpected(path, "no `cpu` line"))?;
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

/// The machine a benchmark ran on, for the record. Every field falls back
/// to an empty or zero value rather than failing: it is a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The CPU's `model name` from `/proc/cpuinfo` ("unknown CPU" without one).
    pub model: String,
    /// Cores this process may use.
    pub cores: usize,
    /// The kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// `MemTotal` of `/proc/meminfo`, KiB.
    pub mem_kib: u64,
    /// The 1, 5 and 15 minute load averages as `/proc/loadavg` writes them,
    /// joined by spaces.
    pub load: String,
}

impl Machine {
    /// Reads it now.
    pub fn read() -> Machine {
        let text = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let model = text("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let mem_kib = text("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let load = text("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            model,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: text("/proc/sys/kernel/osrelease").trim().to_string(),
            mem_kib,
            load,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process() {
        assert!(cpu_seconds(None).expect("cpu") >= 0.0);
        let (rss, hwm) = rss_kb().expect("rss");
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
        assert!(
            Status::read(None)
                .expect("status")
                .value("Threads:")
                .expect("threads")
                >= 1
        );
        assert!(sched_ns(None).expect("schedstat") > 0);
        let (busy, idle) = machine_seconds().expect("stat");
        assert!(busy > 0.0 && idle >= 0.0);
        let smaps = smaps_breakdown(None).expect("smaps");
        assert_eq!(smaps.last().map(|(name, _)| name.as_str()), Some("other"));
        let machine = Machine::read();
        assert!(machine.cores >= 1 && machine.mem_kib > 0, "{machine:?}");
    }

    #[test]
    fn a_missing_process_names_its_path() {
        // Above pid_max (at most 2^22 on Linux).
        let err = cpu_seconds(Some(u32::MAX)).expect_err("no such process");
        assert!(
            err.to_string()
                .contains(&format!("/proc/{}/stat", u32::MAX)),
            "{err}"
        );
    }
}
