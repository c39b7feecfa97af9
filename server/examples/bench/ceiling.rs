//! The ceilings, measured in the same run as the server: what one core
//! can open and verify, and what named accepts from the server's own
//! in-process UPDATE client with nothing else in the way.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{verify_signed, Op, UpdateMsg};
use peach_dyndns_protocol::seal;
use peach_dyndns_server::dns::{self, Rfc2136, ZoneBackend};
use serde::Serialize;
use testkit::Named;

use crate::procfs;
use crate::spec::{bench_key, bench_name, home_ip};

/// Single-core cost of reading one request body.
#[derive(Debug, Clone, Serialize)]
pub struct Crypto {
    /// `open_envelope` calls timed.
    pub calls: u64,
    /// Mean µs of one `open_envelope` (envelope JSON + base64, unseal,
    /// signature check, strict parse): the whole of it.
    pub open_envelope_us: f64,
    /// Mean µs of the envelope alone (JSON, base64).
    pub envelope_us: f64,
    /// Mean µs of the unseal alone (X25519, XSalsa20-Poly1305).
    pub unseal_us: f64,
    /// Mean µs of `verify_signed` alone (JSON, canonical form, ed25519).
    pub verify_us: f64,
}

impl Crypto {
    /// Updates per second one core could open.
    pub fn per_core_rate(&self) -> f64 {
        1e6 / self.open_envelope_us
    }
}

/// Times `open_envelope` on `samples` distinct bodies, repeated until
/// `min_time` has passed (at most 50 passes), on this thread alone.
pub fn crypto(samples: u32, min_time: Duration) -> anyhow::Result<Crypto> {
    let pub_kp = Keypair::generate();
    let keys: Vec<Keypair> = (0..64).map(bench_key).collect();
    let mut bodies = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        let k = i % 64;
        let kp = keys.get(k as usize).context("one of 64 keys")?;
        let msg = UpdateMsg {
            op: Op::Update,
            name: bench_name(k),
            domain: "peach.dinosaur.is".into(),
            ip: Some(home_ip(i)),
            ip6: None,
            public_key: kp.public(),
            seq: u64::from(i) + 1,
            token_sha256: None,
        };
        let envelope = seal::seal_update(&msg.sign(kp), &pub_kp.public())?;
        bodies.push(serde_json::to_vec(&envelope)?);
    }
    let sealed: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| seal::parse_envelope(b))
        .collect::<Result<_, _>>()?;
    let plain: Vec<Vec<u8>> = sealed
        .iter()
        .map(|s| seal::open(s, &pub_kp))
        .collect::<Result<_, _>>()?;

    // Time the whole, then each part, over the same bodies.
    let (calls, open_envelope_us) = time_calls(bodies.len(), min_time, &|i| {
        bodies
            .get(i)
            .is_some_and(|b| black_box(seal::open_envelope(black_box(b), &pub_kp)).is_ok())
    })?;
    let part_time = min_time / 4;
    let (_, envelope_us) = time_calls(bodies.len(), part_time, &|i| {
        bodies
            .get(i)
            .is_some_and(|b| black_box(seal::parse_envelope(black_box(b))).is_ok())
    })?;
    let (_, unseal_us) = time_calls(sealed.len(), part_time, &|i| {
        sealed
            .get(i)
            .is_some_and(|s| black_box(seal::open(black_box(s), &pub_kp)).is_ok())
    })?;
    let (_, verify_us) = time_calls(plain.len(), part_time, &|i| {
        plain
            .get(i)
            .is_some_and(|p| black_box(verify_signed(black_box(p))).is_ok())
    })?;
    Ok(Crypto {
        calls,
        open_envelope_us,
        envelope_us,
        unseal_us,
        verify_us,
    })
}

/// Calls `f(0..n)` in passes until `min_time` has passed (at most 50
/// passes); every call must succeed. Returns (calls, mean µs per call).
fn time_calls(
    n: usize,
    min_time: Duration,
    f: &dyn Fn(usize) -> bool,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut calls = 0u64;
    for _pass in 0..50 {
        for i in 0..n {
            anyhow::ensure!(f(i), "call {i} failed");
            calls += 1;
        }
        if started.elapsed() >= min_time {
            break;
        }
    }
    anyhow::ensure!(calls > 0, "nothing to time");
    Ok((calls, started.elapsed().as_secs_f64() * 1e6 / calls as f64))
}

/// named's update rate from the server's RFC 2136 client.
#[derive(Debug, Clone, Serialize)]
pub struct RawBind {
    /// Concurrent update loops.
    pub tasks: usize,
    /// Confirmed updates per second.
    pub rate: f64,
    /// Updates that failed (must be 0).
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// named's CPU per update, ms.
    pub named_ms: f64,
    /// This process's (the client's) CPU per update, ms.
    pub client_ms: f64,
}

/// Drives named with `tasks` concurrent loops of changing updates for
/// `duration` through the `bind-local` backend (`dns::measure_rate`).
pub async fn raw_bind(named: &Named, tasks: usize, duration: Duration) -> anyhow::Result<RawBind> {
    let backend: Arc<dyn ZoneBackend> = Arc::new(Rfc2136::bind_local(
        named.addr(),
        named.zone(),
        &named.session_key_path(),
    )?);
    let named_before = procfs::cpu_seconds(Some(named.pid()))?;
    let self_before = procfs::cpu_seconds(None)?;
    let report = dns::measure_rate(backend, &format!("raw{tasks}x"), tasks, duration).await;
    // The CPU figures include the clean-up (one removal per task).
    let named_cpu = procfs::cpu_seconds(Some(named.pid()))? - named_before;
    let self_cpu = procfs::cpu_seconds(None)? - self_before;
    let updates = report.ok + tasks as u64;
    Ok(RawBind {
        tasks,
        rate: report.per_second(),
        failed: report.failed,
        first_error: report.first_error.clone(),
        named_ms: crate::spec::per_update_ms(named_cpu, updates),
        client_ms: crate::spec::per_update_ms(self_cpu, updates),
    })
}
