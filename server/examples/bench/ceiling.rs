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
use serde::{Deserialize, Serialize};
use testkit::procfs;

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
    /// Inside the unseal: µs to turn the pub's ed25519 secret into its
    /// X25519 secret (SHA-512), done on every `seal::open`.
    pub x25519_secret_us: f64,
    /// Inside the unseal: µs of the fixed-base X25519 multiplication that
    /// crypto_box's `unseal` does on every call to learn the recipient's
    /// public key for the nonce (the same key every time).
    pub x25519_public_us: f64,
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
            pub_id: pub_kp.public(),
            public_key: kp.public(),
            seq: u64::from(i) + 1,
            token_sha256: None,
            txt: None,
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
    let (_, x25519_secret_us) = time_calls(sealed.len(), part_time, &|_| {
        black_box(black_box(&pub_kp).to_x25519_secret()) != [0u8; 32]
    })?;
    let secret = crypto_box::SecretKey::from(pub_kp.to_x25519_secret());
    let (_, x25519_public_us) = time_calls(sealed.len(), part_time, &|_| {
        black_box(black_box(&secret).public_key()).as_bytes() != &[0u8; 32]
    })?;
    Ok(Crypto {
        calls,
        open_envelope_us,
        envelope_us,
        unseal_us,
        verify_us,
        x25519_secret_us,
        x25519_public_us,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Cores' worth of CPU other processes on the machine used meanwhile.
    pub other_cores: f64,
}

impl RawBind {
    /// One line for a person.
    pub fn describe(&self) -> String {
        let failed = if self.failed > 0 {
            format!(" !!! {} FAILED: {:?}", self.failed, self.first_error)
        } else {
            String::new()
        };
        format!(
            "raw BIND, {:>2} concurrent UPDATE loops: {:>6.0} updates/s, named CPU {:.3} ms/update, \
             client CPU {:.3} ms/update (other processes: {:.2} cores){failed}",
            self.tasks, self.rate, self.named_ms, self.client_ms, self.other_cores
        )
    }
}

/// Where named is: what [`raw_bind`] needs.
#[derive(Debug, Clone)]
pub struct NamedAt<'a> {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// The zone.
    pub zone: &'a str,
    /// Its session key file.
    pub session_key: &'a std::path::Path,
    /// Its process.
    pub pid: u32,
}

/// Drives named with `tasks` concurrent loops of changing updates for
/// `duration` through the `bind-local` backend (`dns::measure_rate`).
pub async fn raw_bind(
    named: &NamedAt<'_>,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<RawBind> {
    let backend: Arc<dyn ZoneBackend> = Arc::new(Rfc2136::bind_local(
        named.addr,
        named.zone,
        named.session_key,
    )?);
    let named_before = procfs::cpu_seconds(Some(named.pid))?;
    let self_before = procfs::cpu_seconds(None)?;
    let (machine_before, _) = procfs::machine_seconds()?;
    let started = Instant::now();
    let report = dns::measure_rate(backend, &format!("raw{tasks}x"), tasks, duration).await;
    // The CPU figures include the clean-up (one removal per task).
    let wall = started.elapsed().as_secs_f64();
    let (machine_after, _) = procfs::machine_seconds()?;
    let named_cpu = procfs::cpu_seconds(Some(named.pid))? - named_before;
    let self_cpu = procfs::cpu_seconds(None)? - self_before;
    let others = machine_after - machine_before - named_cpu - self_cpu;
    let updates = report.ok + tasks as u64;
    Ok(RawBind {
        tasks,
        rate: report.per_second(),
        failed: report.failed,
        first_error: report.first_error.clone(),
        named_ms: crate::spec::per_update_ms(named_cpu, updates),
        client_ms: crate::spec::per_update_ms(self_cpu, updates),
        other_cores: (others / wall.max(1e-9)).max(0.0),
    })
}

/// Single-thread cost of the registry calls an update makes, on a
/// registry file holding `names` names (in a temporary directory).
#[derive(Debug, Clone, Serialize)]
pub struct RegistryCost {
    /// Names in the registry while timing.
    pub names: u32,
    /// Mean µs of `last_seq` (made twice per update).
    pub last_seq_us: f64,
    /// Mean µs of `get` (once per update).
    pub get_us: f64,
    /// Mean µs of `commit_seq` (a no-change update's commit).
    pub commit_seq_us: f64,
    /// Mean µs of `commit_set` (a changing update's commit).
    pub commit_set_us: f64,
}

/// Times the registry calls of the update pipeline, `calls` of each.
pub fn registry(names: u32, calls: u32) -> anyhow::Result<RegistryCost> {
    use peach_dyndns_server::registry::{Entry, Registry};
    let dir = tempfile::tempdir()?;
    let registry = Registry::open(&dir.path().join("registry.sqlite3"))?;
    let owners: Vec<String> = (0..names).map(|k| bench_key(k).id()).collect();
    let entry = |k: u32, ip: std::net::Ipv4Addr| Entry {
        name: bench_name(k),
        owner: owners.get(k as usize).cloned().unwrap_or_default(),
        ip: Some(ip),
        ip6: None,
        ttl: 60,
        token_sha256: None,
        created_ms: 1,
        updated_ms: 1,
    };
    // Queued all at once: the writer thread commits them in batches.
    let fills: Vec<_> = (0..names)
        .map(|k| registry.commit_set(&entry(k, home_ip(k)), 1))
        .collect();
    for fill in fills {
        fill.wait()?;
    }
    let n = names.max(1);
    let time = |f: &dyn Fn(u32) -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let started = Instant::now();
        for i in 0..calls {
            f(i)?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(calls.max(1)))
    };
    let owner = |i: u32| owners.get((i % n) as usize).cloned().unwrap_or_default();
    let last_seq_us = time(&|i| {
        black_box(registry.last_seq(&owner(i))?);
        Ok(())
    })?;
    let get_us = time(&|i| {
        black_box(registry.get(&bench_name(i % n))?);
        Ok(())
    })?;
    let commit_seq_us = time(&|i| Ok(registry.commit_seq(&owner(i), 2 + u64::from(i)).wait()?))?;
    let commit_set_us = time(&|i| {
        let e = entry(i % n, crate::spec::change_ip(0, i / n, i % n));
        Ok(registry.commit_set(&e, 1_000_000 + u64::from(i)).wait()?)
    })?;
    Ok(RegistryCost {
        names,
        last_seq_us,
        get_us,
        commit_seq_us,
        commit_set_us,
    })
}
