//! Soak (issue 10): N clients with their own keys, each followed by the
//! pub's graph (the allowlist), send signed updates with random address
//! changes to one real server binary for a fixed time; at the end every
//! name in DNS must equal the last address its owner was told 200 for.
//!
//! Ignored by default (it runs for a fixed time); `scripts/test.d/45-soak`
//! runs it: 20 s with 16 clients, or with `PEACH_DYNDNS_SLOW=1` 10 min
//! with 64. `PEACH_DYNDNS_SOAK_SECS` and `PEACH_DYNDNS_SOAK_CLIENTS` set
//! either by hand.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use rand_core::{OsRng, RngCore};

use crate::real::*;

/// A number from the environment, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    /// Refusals by their code (`rate_limited`, …), and `no_answer`.
    refused: BTreeMap<String, u64>,
    /// The addresses of the last 200.
    last: Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)>,
}

/// A random address for a client: A only, or A and AAAA.
fn random_addrs(i: usize) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let r = OsRng.next_u32();
    let ip = Ipv4Addr::new(24, i as u8, (r >> 8) as u8, (r >> 16) as u8 | 1);
    let ip6 = (r & 1 == 1)
        .then(|| Ipv6Addr::new(0x2a01, 0x4f8, i as u16, 0, 0, 0, 0, (r >> 16) as u16 | 1));
    (Some(ip), ip6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs for a fixed time; scripts/test.d/45-soak runs it"]
async fn soak_every_name_ends_at_its_last_200() {
    let slow = std::env::var("PEACH_DYNDNS_SLOW").is_ok_and(|v| v == "1");
    let secs = env_or("PEACH_DYNDNS_SOAK_SECS", if slow { 600 } else { 20 });
    let n = env_or("PEACH_DYNDNS_SOAK_CLIENTS", if slow { 64 } else { 16 }) as usize;
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            Client::new(
                &format!("soak{i}"),
                IpAddr::from([127, 0, 3 + (i / 250) as u8, (i % 250) as u8 + 1]),
            )
        })
        .collect();
    let ids: Vec<String> = clients
        .iter()
        .map(|c| format!("\"{}\"", c.keypair.id()))
        .collect();
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &format!("backend = \"allowlist\"\nallow = [{}]", ids.join(", ")),
            top: "",
            // A per-key limit that clients sending every 20–300 ms reach
            // now and then, so refusals are part of the soak.
            tables: "[rate_limit]\nper_key_per_minute = 240\nper_key_burst = 8",
        },
    );
    let rss_start = server.rss_kib();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (to, http) = (server.keypair.clone(), server.http);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let to = to.clone();
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut current = random_addrs(i);
                while Instant::now() < deadline {
                    let pause = 20 + u64::from(OsRng.next_u32() % 280);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    // Two in three checks find a new address.
                    if OsRng.next_u32() % 3 != 0 {
                        current = random_addrs(i);
                    }
                    let body = c.update_body(&to, current.0, current.1);
                    t.sent += 1;
                    match request(c.source, http, "POST", "/update", &body).await {
                        Ok(r) if r.status == 200 => {
                            t.accepted += 1;
                            t.last = Some(current);
                        }
                        Ok(r) => *t.refused.entry(r.error().to_string()).or_default() += 1,
                        Err(_) => *t.refused.entry("no_answer".into()).or_default() += 1,
                    }
                }
                (c, t)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("client"));
    }
    let rss_end = server.rss_kib();
    // Every name in DNS (and in the registry) is the last 200's.
    let dns = server.dns.expect("embedded DNS");
    let registry = server.registry();
    let mut mismatches = Vec::new();
    for (c, t) in &results {
        let fqdn = c.fqdn();
        let (a, aaaa) = tokio::task::spawn_blocking(move || {
            (dig_tcp(dns, &fqdn, "A"), dig_tcp(dns, &fqdn, "AAAA"))
        })
        .await
        .expect("dig");
        let want = t.last.unwrap_or((None, None));
        let as_dns = (
            want.0
                .map(|ip| ip.to_string())
                .into_iter()
                .collect::<Vec<_>>(),
            want.1
                .map(|ip| ip.to_string())
                .into_iter()
                .collect::<Vec<_>>(),
        );
        let in_registry = registry.get(&c.name).copied();
        if (a.clone(), aaaa.clone()) != as_dns || in_registry != t.last {
            mismatches.push(format!(
                "{}: DNS {a:?} {aaaa:?}, registry {in_registry:?}, last 200 {:?}",
                c.name, t.last
            ));
        }
    }
    let sent: u64 = results.iter().map(|(_, t)| t.sent).sum();
    let accepted: u64 = results.iter().map(|(_, t)| t.accepted).sum();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for (_, t) in &results {
        for (code, k) in &t.refused {
            *refused.entry(code.clone()).or_default() += k;
        }
    }
    println!("soak: {n} clients, {secs} s, one server (embedded DNS), random address changes");
    println!("{:>24} {:>10}", "sent", sent);
    println!("{:>24} {:>10}", "accepted (200)", accepted);
    for (code, k) in &refused {
        println!("{:>24} {:>10}", format!("refused: {code}"), k);
    }
    println!("{:>24} {:>10}", "mismatches", mismatches.len());
    println!(
        "{:>24} {:>7} KiB at start, {} KiB at the end",
        "server RSS", rss_start, rss_end
    );
    assert!(
        mismatches.is_empty(),
        "DNS or the registry differ from the last 200: {mismatches:#?}"
    );
    assert!(
        accepted >= n as u64,
        "every client was accepted at least once: {accepted}"
    );
    assert!(
        !refused.contains_key("no_answer"),
        "every request was answered: {refused:?}"
    );
}
