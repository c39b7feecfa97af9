//! The report: the samples, the summary the targets are judged on, the
//! targets of issue 4 beside the peers, and the machine it ran on.

use testkit::procfs;

use crate::binaries::inadyn_size;
use crate::measure::Sample;

/// Issue 4's targets.
pub(crate) const TARGET_RSS_KIB: u64 = 4608; // 4.5 MiB

pub(crate) const TARGET_CPU_MS: f64 = 0.5;

pub(crate) const TARGET_BINARY_BYTES: u64 = 8 * 1024 * 1024;

/// Peers measured on this kind of machine (issue 4), for the table.
pub(crate) const PEERS: [(&str, &str, &str); 2] = [
    ("inadyn 2.10 (issue 4)", "4.7 MB", "0.40 ms"),
    ("ddclient 3.10 (issue 4)", "15.8 MB", "2.4 ms"),
];

pub(crate) fn print_samples(samples: &[(String, Sample)]) {
    println!(
        "  {:<24} {:>7} {:>10} {:>10} {:>9} {:>9} {:>4} {:>9}",
        "", "checks", "VmRSS", "VmHWM", "RssAnon", "RssFile", "thr", "CPU ms"
    );
    for (what, s) in samples {
        println!(
            "  {what:<24} {:>7} {:>7} KiB {:>6} KiB {:>5} KiB {:>5} KiB {:>4} {:>9.0}",
            s.checks, s.rss_kib, s.hwm_kib, s.anon_kib, s.file_kib, s.threads, s.cpu_ms
        );
    }
}

/// The numbers the targets are judged on.
pub(crate) struct Summary {
    pub(crate) last: Sample,
    pub(crate) growth_kib: i64,
    pub(crate) anon_growth_kib: i64,
    pub(crate) cpu_ms_per_check: f64,
    pub(crate) sched_ms_per_check: f64,
    pub(crate) checks: u64,
}

impl Summary {
    /// CPU per check between the first sample (after start) and the last;
    /// growth between the middle sample and the last.
    pub(crate) fn of(samples: &[(String, Sample)]) -> Summary {
        let first = samples[0].1;
        let mid = samples[samples.len() - 2].1;
        let last = samples[samples.len() - 1].1;
        let checks = last.checks.saturating_sub(first.checks).max(1);
        Summary {
            last,
            growth_kib: last.rss_kib as i64 - mid.rss_kib as i64,
            anon_growth_kib: last.anon_kib as i64 - mid.anon_kib as i64,
            cpu_ms_per_check: (last.cpu_ms - first.cpu_ms) / checks as f64,
            sched_ms_per_check: last.sched_ns.saturating_sub(first.sched_ns) as f64
                / 1e6
                / checks as f64,
            checks,
        }
    }

    pub(crate) fn print(&self) {
        println!(
            "  CPU per check over {} checks: {:.3} ms (utime+stime), {:.3} ms (schedstat)",
            thousands(self.checks),
            self.cpu_ms_per_check,
            self.sched_ms_per_check
        );
        println!(
            "  growth between the last two samples: VmRSS {:+} KiB, RssAnon {:+} KiB",
            self.growth_kib, self.anon_growth_kib
        );
    }
}

pub(crate) fn print_machine() {
    let m = procfs::Machine::read();
    println!(
        "machine: {}, {} cores, {:.1} GiB, Linux {}, load {}",
        m.model,
        m.cores,
        m.mem_kib as f64 / 1024.0 / 1024.0,
        m.kernel,
        m.load
    );
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

pub(crate) fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// 10000 → "10,000".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Which targets a run met.
pub(crate) struct Verdict {
    /// Every target.
    pub(crate) all: bool,
    /// The memory targets alone (VmRSS and VmHWM): what does not depend on
    /// how busy the machine is.
    pub(crate) memory: bool,
}

/// The targets of issue 4 beside the daemon's and inadyn's numbers, and
/// the peers measured before.
pub(crate) fn print_targets(d: &Summary, i: Option<&Summary>, stripped_size: u64) -> Verdict {
    println!();
    println!("Targets (issue 4)");
    let rss_ok = d.last.rss_kib <= TARGET_RSS_KIB;
    let hwm_ok = d.last.hwm_kib <= TARGET_RSS_KIB;
    let mut all = true;
    let mut row = |what: &str, target: &str, ours: String, theirs: String, pass: bool| {
        all &= pass;
        println!(
            "  {what:<34} {target:>10}  {ours:>12}  {theirs:>12}  {}",
            if pass { "PASS" } else { "MISS" }
        );
    };
    println!(
        "  {:<34} {:>10}  {:>12}  {:>12}",
        "", "target", "daemon", "inadyn"
    );
    let na = || "-".to_string();
    row(
        "VmRSS after all checks",
        "≤ 4.5 MiB",
        format!("{:.2} MiB", kib_to_mib(d.last.rss_kib)),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.2} MiB", kib_to_mib(s.last.rss_kib))),
        rss_ok,
    );
    row(
        "VmHWM (peak) after all checks",
        "≤ 4.5 MiB",
        format!("{:.2} MiB", kib_to_mib(d.last.hwm_kib)),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.2} MiB", kib_to_mib(s.last.hwm_kib))),
        hwm_ok,
    );
    row(
        "CPU per no-change check",
        "≤ 0.5 ms",
        format!("{:.3} ms", d.cpu_ms_per_check),
        i.as_ref()
            .map_or_else(na, |s| format!("{:.3} ms", s.cpu_ms_per_check)),
        d.cpu_ms_per_check <= TARGET_CPU_MS,
    );
    row(
        &format!("stripped {} binary", std::env::consts::ARCH),
        "< 8 MiB",
        format!("{:.2} MiB", mib(stripped_size)),
        inadyn_size().map_or_else(na, |b| format!("{:.2} MiB", mib(b))),
        stripped_size < TARGET_BINARY_BYTES,
    );
    row(
        "VmRSS growth, last 90 % of checks",
        "0 KiB",
        format!("{:+} KiB", d.growth_kib),
        i.as_ref()
            .map_or_else(na, |s| format!("{:+} KiB", s.growth_kib)),
        d.growth_kib <= 0,
    );
    println!(
        "  (inadyn's binary is small because its work is in shared libraries, \
         which its RSS counts)"
    );
    println!();
    println!("Peers measured before (issue 4): RSS, CPU per check");
    for (name, rss, cpu) in PEERS {
        println!("  {name:<26} {rss:>8}  {cpu:>8}");
    }
    Verdict {
        all,
        memory: rss_ok && hwm_ok,
    }
}
