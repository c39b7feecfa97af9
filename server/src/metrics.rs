//! Prometheus text metrics: requests by endpoint and result, update
//! latency, registry size. Written by hand: a few atomics do not need a
//! metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram, in seconds: from 0.25 ms (an
/// embedded no-change update) to 2.5 s (a DNS server timing out).
const BUCKETS: [f64; 11] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A latency histogram over [`BUCKETS`].
#[derive(Default)]
struct Histogram {
    /// Counts, one per bucket plus +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observations in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// (observations, their sum in µs).
    fn totals(&self) -> (u64, u64) {
        let n = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (n, self.sum_us.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// A part of an update that waits: where its latency goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The DNS backend applying the change (with the wait for a slot at
    /// named, for the BIND backends).
    Dns,
    /// The registry commit, until its fsync (only for updates that change
    /// something; a no-change update does not wait for one).
    Commit,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    /// (endpoint, result) → count.
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Time to handle `POST /update`.
    latency: Histogram,
    /// Time in the DNS backend, per update that changed DNS.
    dns: Histogram,
    /// Time waiting for the registry commit, per update that committed.
    commit: Histogram,
}

impl Metrics {
    /// Counts a request to `endpoint` with `result` (`ok`, an error code,
    /// or a dyndns2 word).
    pub fn count(&self, endpoint: &'static str, result: &str) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((endpoint, result.to_string())).or_insert(0) += 1;
    }

    /// Records one update's latency.
    pub fn observe_update(&self, took: Duration) {
        self.latency.observe(took);
    }

    /// How many `POST /update` were handled so far and their time in µs,
    /// from the headers read to the answer (the benchmark compares it with
    /// the client's).
    pub fn update_totals(&self) -> (u64, u64) {
        self.latency.totals()
    }

    /// Records how long one update spent in `stage`.
    pub fn observe_stage(&self, stage: Stage, took: Duration) {
        self.stage(stage).observe(took);
    }

    /// Runs `work` and records its time as one update's `stage`.
    pub async fn timed<T>(&self, stage: Stage, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        self.observe_stage(stage, started.elapsed());
        out
    }

    /// How many updates went through `stage` so far, and the time they
    /// spent there in µs (the benchmark's breakdown of latency).
    pub fn stage_totals(&self, stage: Stage) -> (u64, u64) {
        self.stage(stage).totals()
    }

    fn stage(&self, stage: Stage) -> &Histogram {
        match stage {
            Stage::Dns => &self.dns,
            Stage::Commit => &self.commit,
        }
    }

    /// The count for (`endpoint`, `result`), for tests.
    pub fn get(&self, endpoint: &'static str, result: &str) -> u64 {
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(endpoint, result.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition, with the registry's size and its
    /// commits so far (one fsync each).
    pub fn render(&self, names: u64, commits: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP peach_dyndns_requests_total Requests by endpoint and result.\n");
        out.push_str("# TYPE peach_dyndns_requests_total counter\n");
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((endpoint, result), n) in map.iter() {
            let _ = writeln!(
                out,
                "peach_dyndns_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {n}"
            );
        }
        drop(map);
        self.latency.render(
            &mut out,
            "peach_dyndns_update_seconds",
            "Time to handle POST /update.",
        );
        self.dns.render(
            &mut out,
            "peach_dyndns_dns_apply_seconds",
            "Time an update spent in the DNS backend (with the wait for a slot at named).",
        );
        self.commit.render(
            &mut out,
            "peach_dyndns_commit_wait_seconds",
            "Time an update waited for its registry commit and fsync.",
        );
        out.push_str("# HELP peach_dyndns_names Registered names.\n");
        out.push_str("# TYPE peach_dyndns_names gauge\n");
        let _ = writeln!(out, "peach_dyndns_names {names}");
        out.push_str(
            "# HELP peach_dyndns_registry_commits_total Registry transactions committed, one fsync each.\n",
        );
        out.push_str("# TYPE peach_dyndns_registry_commits_total counter\n");
        let _ = writeln!(out, "peach_dyndns_registry_commits_total {commits}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.count("update", "ok");
        m.count("update", "ok");
        m.count("update", "stale_seq");
        m.observe_update(Duration::from_micros(300));
        m.observe_update(Duration::from_secs(5));
        m.observe_stage(Stage::Dns, Duration::from_millis(3));
        m.observe_stage(Stage::Commit, Duration::from_micros(700));
        m.observe_stage(Stage::Commit, Duration::from_micros(900));
        assert_eq!(m.stage_totals(Stage::Commit), (2, 1600));
        assert_eq!(m.update_totals(), (2, 5_000_300));
        let text = m.render(3, 7);
        assert!(text.contains("peach_dyndns_requests_total{endpoint=\"update\",result=\"ok\"} 2"));
        assert!(text.contains("result=\"stale_seq\"} 1"));
        assert!(text.contains("peach_dyndns_update_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("peach_dyndns_update_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("peach_dyndns_registry_commits_total 7"));
        assert!(text.contains("peach_dyndns_dns_apply_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("peach_dyndns_dns_apply_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("peach_dyndns_commit_wait_seconds_bucket{le=\"0.001\"} 2"));
        assert!(text.contains("peach_dyndns_commit_wait_seconds_count 2"));
        assert!(text.contains("peach_dyndns_names 3"));
    }
}
