//! The peer: inadyn registered with a dyndns2 token against the same
//! server, driven by SIGUSR2 and sampled like the daemon.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use peach_dyndns_daemon::pubapi::{HttpPubApi, PubApi as _};
use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::rules::token_hash;
use peach_dyndns_protocol::seal::seal_update;
use testkit::{Process, Signal};

use crate::args::{Args, DOMAIN};
use crate::measure::{sample, Metrics, Sample};
use crate::report::thousands;

/// inadyn's name (registered by the bench with a dyndns2 token).
pub(crate) const INADYN_NAME: &str = "inadyn";

/// inadyn's dyndns2 password; only its SHA-256 reaches the server.
pub(crate) const INADYN_TOKEN: &str = "bench-token-not-a-secret";

/// Where inadyn's name points before inadyn runs, so its first update is
/// a real change (`good`), not `nochg`.
pub(crate) const INADYN_FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// inadyn's period in its config: the brief's 10 s (inadyn 2.10 accepts
/// it; its sleep granularity is 1 s). The measured checks are driven by
/// SIGUSR2 on top of it.
pub(crate) const INADYN_PERIOD_SECS: u32 = 10;

/// Registers inadyn's name and token, runs inadyn against the same server
/// and samples it like the daemon. Returns its version and samples.
pub(crate) async fn run_inadyn(
    client: &reqwest::Client,
    metrics: &Metrics,
    dir: &Path,
    base: &str,
    pub_id: &str,
    http_port: u16,
    args: &Args,
) -> anyhow::Result<(String, Vec<(String, Sample)>)> {
    let checks = args.inadyn_checks;
    let pace = Duration::from_millis(args.inadyn_pace_ms);
    let version = Command::new("inadyn")
        .arg("--version")
        .output()
        .context("inadyn is not installed (apt-get install inadyn)")?;
    let version = format!("inadyn {}", String::from_utf8_lossy(&version.stdout).trim());

    // A signed update registers the name with the token's hash: the only
    // way the server hands out a dyndns2 password.
    let keypair = peach_dyndns_daemon::secret::load_secret(&dir.join("inadyn.secret"))?;
    let pub_key: PublicKey = pub_id.parse()?;
    let msg = UpdateMsg {
        op: Op::Update,
        name: INADYN_NAME.into(),
        domain: DOMAIN.into(),
        ip: Some(INADYN_FIRST_IP),
        ip6: None,
        pub_id: pub_key,
        public_key: keypair.public(),
        seq: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?,
        token_sha256: Some(token_hash(INADYN_TOKEN)),
        txt: None,
    };
    let envelope = seal_update(&msg.sign(&keypair), &pub_key)
        .map_err(|e| anyhow::anyhow!("cannot seal: {e}"))?;
    let url = reqwest::Url::parse(&format!("{base}/update"))?;
    HttpPubApi::new(client.clone())
        .send_update(&url, &envelope)
        .await
        .context("registering inadyn's token")?;

    let fqdn = format!("{INADYN_NAME}.{DOMAIN}");
    let conf = dir.join("inadyn.conf");
    std::fs::write(
        &conf,
        format!(
            "period = {INADYN_PERIOD_SECS}\n\
             verify-address = false\n\
             custom bench {{\n\
             \x20   ssl = false\n\
             \x20   checkip-server = 127.0.0.1:{http_port}\n\
             \x20   checkip-path = /ip\n\
             \x20   checkip-ssl = false\n\
             \x20   ddns-server = 127.0.0.1:{http_port}\n\
             \x20   ddns-path = \"/nic/update?hostname=%h&myip=%i\"\n\
             \x20   username = \"{fqdn}\"\n\
             \x20   password = \"{INADYN_TOKEN}\"\n\
             \x20   hostname = \"{fqdn}\"\n\
             }}\n"
        ),
    )?;
    let cache = dir.join("inadyn-cache");
    std::fs::create_dir_all(&cache)?;
    let ip_before = metrics.count("ip", "ok").await?;
    let mut cmd = Command::new("inadyn");
    cmd.arg("--foreground")
        .arg("--no-pidfile")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg("-f")
        .arg(&conf);
    let mut inadyn = Process::spawn(cmd, "inadyn", &dir.join("inadyn.log"))?;
    let start = Instant::now();
    while metrics.count("nic_update", "good").await? < 1 {
        inadyn.check_alive()?;
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "inadyn made no update in 30 s; its log:\n{}",
                inadyn.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The checks are counted from the server's /ip counter; take the daemon's
    // share out by sampling relative counts.
    let mut samples = vec![(
        "after start (updated)".to_string(),
        sample(metrics, inadyn.pid(), ("ip", "ok")).await?,
    )];
    let offset = ip_before;
    samples[0].1.checks -= offset;
    let marks = [checks / 10, checks];
    let mut done = samples[0].1.checks;
    let mut resent = 0u32;
    for mark in marks {
        while done < mark {
            let before = metrics.count("ip", "ok").await?;
            inadyn.signal(Signal::SIGUSR2)?;
            let start = Instant::now();
            let next = start + pace;
            loop {
                inadyn.check_alive()?;
                if metrics.count("ip", "ok").await? > before {
                    break;
                }
                if start.elapsed() > Duration::from_secs(3) {
                    // A signal that landed as inadyn reset its command is
                    // lost; ask again (bounded).
                    resent += 1;
                    if resent > 20 {
                        bail!("inadyn stopped answering SIGUSR2");
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            done = metrics.count("ip", "ok").await?.saturating_sub(offset);
            tokio::time::sleep_until(next.into()).await;
        }
        let mut s = sample(metrics, inadyn.pid(), ("ip", "ok")).await?;
        s.checks -= offset;
        samples.push((format!("after {} checks", thousands(mark)), s));
    }
    if resent > 0 {
        println!("inadyn: {resent} SIGUSR2 signals were sent again after 3 s without a check");
    }
    inadyn.stop(Duration::from_secs(5))?;
    let good = metrics.count("nic_update", "good").await?;
    println!("inadyn: {good} dyndns2 update(s) accepted (the first; then no change)");
    Ok((version, samples))
}
