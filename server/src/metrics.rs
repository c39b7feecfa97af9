//! Prometheus text metrics: requests by endpoint and result, update
//! latency, registry size. Written by hand: a few atomics do not need a
//! metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds: from 0.25 ms (an
/// embedded no-change update) to 2.5 s (a DNS server timing out).
const BUCKETS: [f64; 11] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    /// (endpoint, result) → count.
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Update latency histogram counts, one per bucket plus +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of update latencies in microseconds.
    latency_sum_us: AtomicU64,
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
        let secs = took.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[idx].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
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
        out.push_str("# HELP peach_dyndns_update_seconds Time to handle POST /update.\n");
        out.push_str("# TYPE peach_dyndns_update_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "peach_dyndns_update_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "peach_dyndns_update_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "peach_dyndns_update_seconds_sum {sum}");
        let _ = writeln!(out, "peach_dyndns_update_seconds_count {cumulative}");
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
        let text = m.render(3, 7);
        assert!(text.contains("peach_dyndns_requests_total{endpoint=\"update\",result=\"ok\"} 2"));
        assert!(text.contains("result=\"stale_seq\"} 1"));
        assert!(text.contains("peach_dyndns_update_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("peach_dyndns_update_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("peach_dyndns_registry_commits_total 7"));
        assert!(text.contains("peach_dyndns_names 3"));
    }
}
