//! The ceilings, measured in the same run as the server: what one core
//! can open and verify, and what named accepts from the server's own
//! in-process UPDATE client with nothing else in the way.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{self, verify_signed, Op, UpdateMsg};
use peach_dyndns_protocol::seal;
use peach_dyndns_server::dns::{self, Rfc2136, ZoneBackend};
use serde::{Deserialize, Serialize};
use testkit::procfs;

use crate::spec::{bench_key, bench_name, home_ip};

/// Single-core cost of reading one request body, and the crypto floors:
/// each primitive timed alone with libsodium and with the pure-Rust crates,
/// on the same bodies, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Crypto {
    /// `open_envelope` calls timed.
    pub calls: u64,
    /// Mean µs of one `open_envelope_with` the server's [`seal::Opener`]
    /// (envelope JSON + base64, unseal, signature check, strict parse):
    /// what the server does with a body.
    pub open_envelope_us: f64,
    /// Mean µs of the envelope alone (JSON, base64).
    pub envelope_us: f64,
    /// Mean µs of the server's unseal (`Opener::open`: libsodium's
    /// `crypto_box_seal_open` with the pub's keys derived once).
    pub unseal_us: f64,
    /// Mean µs of `verify_signed` alone (JSON, canonical form, ed25519).
    pub verify_us: f64,
    /// libsodium `crypto_box_seal_open`, called directly.
    pub sodium_unseal_us: f64,
    /// crypto_box's `SecretKey::unseal` (pure Rust), which derives the
    /// recipient's public key again on every call.
    pub rust_unseal_us: f64,
    /// crypto_box's `SalsaBox` with the public key derived once and the
    /// nonce from the blake2 crate (the pure-Rust opener the server had).
    pub rust_unseal_cached_us: f64,
    /// ed25519-dalek `verify_strict` of the signed bytes alone (what
    /// `verify_signed` calls).
    pub dalek_verify_us: f64,
    /// libsodium `crypto_sign_verify_detached` of the same bytes.
    pub sodium_verify_us: f64,
    /// The fixed-base X25519 multiplication crypto_box's `unseal` does on
    /// every call to learn the recipient's public key for the nonce.
    pub x25519_public_us: f64,
}

impl Crypto {
    /// The best unseal of the run (libsodium or pure Rust).
    pub fn best_unseal_us(&self) -> f64 {
        self.sodium_unseal_us
            .min(self.rust_unseal_cached_us)
            .min(self.rust_unseal_us)
    }

    /// The best signature check of the run.
    pub fn best_verify_us(&self) -> f64 {
        self.dalek_verify_us.min(self.sodium_verify_us)
    }

    /// The crypto floor of one update: the best unseal plus the best
    /// signature check, measured in this run.
    pub fn floor_us(&self) -> f64 {
        self.best_unseal_us() + self.best_verify_us()
    }

    /// Updates per second one core could open.
    pub fn per_core_rate(&self) -> f64 {
        1e6 / self.open_envelope_us
    }
}

/// One request's parts, prepared before timing.
struct Sample {
    /// The HTTP body.
    body: Vec<u8>,
    /// The sealed box.
    sealed: Vec<u8>,
    /// What the box holds: the signed update's JSON.
    plain: Vec<u8>,
    /// The bytes the signature covers.
    signed: Vec<u8>,
    /// The signature.
    signature: [u8; 64],
    /// The signer's key.
    key: [u8; 32],
}

/// Times `open_envelope` on `samples` distinct bodies, repeated until
/// `min_time` has passed (at most 50 passes), on this thread alone, then
/// each part and each library's version of it.
pub fn crypto(samples: u32, min_time: Duration) -> anyhow::Result<Crypto> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pub_kp = Keypair::generate();
    let opener = seal::Opener::new(&pub_kp);
    let keys: Vec<Keypair> = (0..64).map(bench_key).collect();
    let mut all = Vec::with_capacity(samples as usize);
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
        let signed_update = msg.sign(kp);
        let envelope = seal::seal_update(&signed_update, &pub_kp.public())?;
        let body = serde_json::to_vec(&envelope)?;
        let sealed = seal::parse_envelope(&body)?;
        let plain = opener.open(&sealed)?;
        let sig_text = signed_update
            .signature
            .strip_suffix(".sig.ed25519")
            .context("signature suffix")?;
        let signature: [u8; 64] = b64
            .decode(sig_text)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("a signature is 64 bytes"))?;
        all.push(Sample {
            body,
            sealed,
            plain,
            signed: message::signing_bytes(&msg.canonical()),
            signature,
            key: *kp.public().as_bytes(),
        });
    }
    let n = all.len();

    // The whole, then each part, over the same bodies.
    let (calls, open_envelope_us) = time_calls(
        n,
        min_time,
        &over(&all, &|s| {
            black_box(seal::open_envelope_with(black_box(&s.body), &opener)).is_ok()
        }),
    )?;
    let part_time = min_time / 4;
    let (_, envelope_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(seal::parse_envelope(black_box(&s.body))).is_ok()
        }),
    )?;
    let (_, unseal_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(opener.open(black_box(&s.sealed))).is_ok()
        }),
    )?;
    let (_, verify_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(verify_signed(black_box(&s.plain))).is_ok()
        }),
    )?;

    // libsodium.
    let secret = crypto_box::SecretKey::from(pub_kp.to_x25519_secret());
    let public = secret.public_key();
    let sodium_pk = sodiumoxide::crypto::box_::PublicKey(*public.as_bytes());
    let sodium_sk = sodiumoxide::crypto::box_::SecretKey(secret.to_bytes());
    let (_, sodium_unseal_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(sodiumoxide::crypto::sealedbox::open(
                black_box(&s.sealed),
                &sodium_pk,
                &sodium_sk,
            ))
            .is_ok()
        }),
    )?;
    let (_, sodium_verify_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            use sodiumoxide::crypto::sign::ed25519;
            black_box(ed25519::verify_detached(
                &ed25519::Signature(s.signature),
                black_box(&s.signed),
                &ed25519::PublicKey(s.key),
            ))
        }),
    )?;

    // Pure Rust.
    let (_, rust_unseal_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(secret.unseal(black_box(&s.sealed))).is_ok()
        }),
    )?;
    let (_, rust_unseal_cached_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            black_box(rust_open(&secret, &public, black_box(&s.sealed))).is_some()
        }),
    )?;
    let (_, dalek_verify_us) = time_calls(
        n,
        part_time,
        &over(&all, &|s| {
            let sig = ed25519_dalek::Signature::from_bytes(&s.signature);
            ed25519_dalek::VerifyingKey::from_bytes(&s.key)
                .is_ok_and(|vk| black_box(vk.verify_strict(black_box(&s.signed), &sig)).is_ok())
        }),
    )?;
    let (_, x25519_public_us) = time_calls(n, part_time, &|_| {
        black_box(black_box(&secret).public_key()).as_bytes() != &[0u8; 32]
    })?;
    Ok(Crypto {
        calls,
        open_envelope_us,
        envelope_us,
        unseal_us,
        verify_us,
        sodium_unseal_us,
        rust_unseal_us,
        rust_unseal_cached_us,
        dalek_verify_us,
        sodium_verify_us,
        x25519_public_us,
    })
}

/// `f` of sample `i` (false past the end).
fn over<'a>(all: &'a [Sample], f: &'a dyn Fn(&Sample) -> bool) -> impl Fn(usize) -> bool + 'a {
    move |i| all.get(i).is_some_and(f)
}

/// A sealed box opened in pure Rust with the recipient's public key
/// derived once: BLAKE2b-24 nonce, then crypto_box's `SalsaBox`.
fn rust_open(
    secret: &crypto_box::SecretKey,
    public: &crypto_box::PublicKey,
    sealed: &[u8],
) -> Option<Vec<u8>> {
    use blake2::digest::consts::U24;
    use blake2::{Blake2b, Digest as _};
    use crypto_box::aead::Aead as _;
    let (ephemeral, ciphertext) = sealed.split_first_chunk::<32>()?;
    let ephemeral = crypto_box::PublicKey::from(*ephemeral);
    let mut hasher = Blake2b::<U24>::new();
    hasher.update(ephemeral.as_bytes());
    hasher.update(public.as_bytes());
    let nonce = hasher.finalize();
    crypto_box::SalsaBox::new(&ephemeral, secret)
        .decrypt(&nonce, ciphertext)
        .ok()
}

/// Calls `f(0..n)` in passes until `min_time` of this thread's CPU time
/// has passed (at most 50 passes); every call must succeed. Returns
/// (calls, mean µs of CPU per call). CPU time, not wall time: on a shared
/// machine the thread may wait for a core several times as long as it
/// runs, and the server's figures it is compared with are CPU time too.
fn time_calls(
    n: usize,
    min_time: Duration,
    f: &dyn Fn(usize) -> bool,
) -> anyhow::Result<(u64, f64)> {
    let started = thread_cpu_ns()?;
    let min_ns = u64::try_from(min_time.as_nanos()).unwrap_or(u64::MAX);
    let mut calls = 0u64;
    for _pass in 0..50 {
        for i in 0..n {
            anyhow::ensure!(f(i), "call {i} failed");
            calls += 1;
        }
        if thread_cpu_ns()?.saturating_sub(started) >= min_ns {
            break;
        }
    }
    anyhow::ensure!(calls > 0, "nothing to time");
    let spent = thread_cpu_ns()?.saturating_sub(started);
    Ok((calls, spent as f64 / 1e3 / calls as f64))
}

/// This thread's time on a CPU so far, ns: the first field of
/// `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("parsing /proc/thread-self/schedstat")
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
    // One UPDATE in flight per loop: named's own ceiling, without the
    // server's bound on what it keeps at named.
    let backend: Arc<dyn ZoneBackend> = Arc::new(
        Rfc2136::bind_local(named.addr, named.zone, named.session_key)?.with_max_in_flight(tasks),
    );
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
