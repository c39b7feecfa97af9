//! Faults with the real parts (issue 10), against the built binary: BIND's
//! `named` killed during a load, ssb-server killed, the server itself
//! SIGKILLed during a load of concurrent updates and started again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::{parse_secret_file, Keypair};
use testkit::{Named, Sbot};

use crate::common::DOMAIN;
use crate::real::*;

/// What one request of a load came to.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Answered with this status and error code (`""` for a 200), and
    /// whether `Retry-After` came with it.
    Answered(u16, String, bool),
    /// No answer (the server died, or hung up).
    NoAnswer,
}

/// One request: the name, the address asked for, what came back.
type Sent = (String, Ipv4Addr, Outcome);

/// The `[dns]` table of bind-local against `named`.
fn bind_local(named: &Named) -> String {
    format!(
        "backend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    )
}

/// An allowlist graph of these clients.
fn allowlist(clients: &[Client]) -> String {
    let ids: Vec<String> = clients
        .iter()
        .map(|c| format!("\"{}\"", c.keypair.id()))
        .collect();
    format!("backend = \"allowlist\"\nallow = [{}]", ids.join(", "))
}

/// Rate limits that a load of a few hundred updates does not reach, and
/// room for many names per key.
const LOAD_LIMITS: &str = "[rate_limit]\nper_key_per_minute = 100000\nper_key_burst = 10000\n\
                           failures_per_ip_per_minute = 100000";

/// `n` clients, each from its own source address.
fn clients(n: usize, prefix: &str) -> Vec<Client> {
    (0..n)
        .map(|i| {
            Client::new(
                &format!("{prefix}{i}"),
                IpAddr::from([127, 0, 2, i as u8 + 1]),
            )
        })
        .collect()
}

/// An address for request `k` of client `i`.
fn addr(i: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(24, i as u8 + 1, (k / 250) as u8, (k % 250) as u8 + 1)
}

/// Runs every client in its own task, sending updates one after another
/// until `stop` is set; with `fresh_names`, every second update is for a
/// name the key does not hold yet (`<name>-<k>`), so a crash can land
/// between the DNS write and the commit of a new name.
async fn load(
    server: &RealServer,
    clients: Vec<Client>,
    stop: Arc<AtomicBool>,
    fresh_names: bool,
) -> Vec<tokio::task::JoinHandle<(Client, Vec<Sent>)>> {
    let (to, http) = (server.keypair.clone(), server.http);
    clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let stop = stop.clone();
            let to = to.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let base = c.name.clone();
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    c.name = if fresh_names && k % 2 == 1 {
                        format!("{base}-{k}")
                    } else {
                        base.clone()
                    };
                    let ip = addr(i, k);
                    let body = c.update_body(&to, Some(ip), None);
                    let outcome = match request(c.source, http, "POST", "/update", &body).await {
                        Ok(r) => Outcome::Answered(
                            r.status,
                            r.error().to_string(),
                            r.retry_after.is_some(),
                        ),
                        Err(_) => Outcome::NoAnswer,
                    };
                    let unanswered = outcome == Outcome::NoAnswer;
                    sent.push((c.name.clone(), ip, outcome));
                    if unanswered {
                        // The server is gone: this client's load is over.
                        break;
                    }
                    k += 1;
                }
                c.name = base;
                (c, sent)
            })
        })
        .collect()
}

/// Per name: the last address answered 200, and the addresses asked for
/// after it that got no 200 (a request the server may have carried out
/// without its answer arriving).
fn expectations(sent: &[Sent]) -> BTreeMap<String, (Option<Ipv4Addr>, Vec<Ipv4Addr>)> {
    let mut out: BTreeMap<String, (Option<Ipv4Addr>, Vec<Ipv4Addr>)> = BTreeMap::new();
    for (name, ip, outcome) in sent {
        let e = out.entry(name.clone()).or_default();
        match outcome {
            Outcome::Answered(200, ..) => *e = (Some(*ip), Vec::new()),
            _ => e.1.push(*ip),
        }
    }
    out
}

/// The A records of every name in `named`'s zone (a zone transfer).
fn bind_zone(named: &Named) -> BTreeMap<String, String> {
    let text = std::process::Command::new("dig")
        .args([
            &format!("@{}", named.addr().ip()),
            "-p",
            &named.port().to_string(),
            "+nocmd",
            "+nostats",
            DOMAIN,
            "AXFR",
        ])
        .output()
        .expect("dig axfr");
    let mut names = BTreeMap::new();
    for line in String::from_utf8_lossy(&text.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 && f[3] == "A" {
            let label = f[0].trim_end_matches('.').trim_end_matches(DOMAIN);
            let label = label.trim_end_matches('.');
            if !label.is_empty() && !label.starts_with("ns") {
                names.insert(label.to_string(), f[4].to_string());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_killed_during_a_load_is_503_and_converges_when_it_returns() {
    let mut named = Named::start();
    let cs = clients(6, "bindload");
    let mut server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: Some(&bind_local(&named)),
            graph: &allowlist(&cs),
            top: "",
            tables: LOAD_LIMITS,
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&server, cs, stop.clone(), false).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = Instant::now();
    let mut named = tokio::task::spawn_blocking(move || {
        named.kill();
        named
    })
    .await
    .expect("kill");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    let mut cs = Vec::new();
    for t in tasks {
        let (c, sent) = t.await.expect("client");
        all.extend(sent);
        cs.push(c);
    }
    let ok = all
        .iter()
        .filter(|s| matches!(s.2, Outcome::Answered(200, ..)))
        .count();
    let unavailable: Vec<_> = all
        .iter()
        .filter(|s| matches!(&s.2, Outcome::Answered(503, code, _) if code == "dns_unavailable"))
        .collect();
    let other: Vec<_> = all
        .iter()
        .filter(|s| {
            !matches!(&s.2, Outcome::Answered(200, ..))
                && !matches!(&s.2, Outcome::Answered(503, code, _) if code == "dns_unavailable")
        })
        .collect();
    println!(
        "named killed during a load: {} updates, {ok} answered 200, {} answered 503 dns_unavailable, {} other ({:?} after the kill)",
        all.len(),
        unavailable.len(),
        other.len(),
        killed_at.elapsed()
    );
    assert!(ok > 0 && !unavailable.is_empty(), "200s before, 503s after");
    assert!(other.is_empty(), "only 200 and 503: {other:?}");
    assert!(
        unavailable
            .iter()
            .all(|s| matches!(s.2, Outcome::Answered(_, _, true))),
        "every 503 carries Retry-After"
    );
    // named comes back with its journal; every registry row has its record
    // (the address of its last 200, or one whose answer was a 503 while
    // named went down and that named may have applied just before).
    let named = tokio::task::spawn_blocking(move || {
        named.restart();
        named
    })
    .await
    .expect("restart");
    let expect = expectations(&all);
    let registry = server.registry();
    let zone = bind_zone(&named);
    for (name, (ip, _)) in &registry {
        let (last_ok, maybe) = &expect[name];
        assert_eq!(ip, last_ok, "{name}: the registry holds its last 200");
        let in_dns: Ipv4Addr = zone
            .get(name)
            .unwrap_or_else(|| panic!("{name} is in the registry but not in DNS: {zone:?}"))
            .parse()
            .expect("an address");
        assert!(
            Some(in_dns) == *ip || maybe.contains(&in_dns),
            "{name}: DNS has {in_dns}, the registry {ip:?}"
        );
    }
    // Convergence: every client's next update goes through, and DNS and
    // the registry agree on every name.
    for (i, c) in cs.iter_mut().enumerate() {
        let ip = addr(i, 999);
        let mut answered = None;
        for _ in 0..20 {
            let r = c.update(&server, Some(ip), None).await.expect("answer");
            if r.status == 200 {
                answered = Some(r);
                break;
            }
            // The session key is read again once named wrote a new one.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            answered.is_some(),
            "{} converges after named returns",
            c.name
        );
    }
    let registry = server.registry();
    let zone = bind_zone(&named);
    let registry_a: BTreeMap<String, String> = registry
        .iter()
        .map(|(n, (ip, _))| (n.clone(), ip.expect("an A record").to_string()))
        .collect();
    assert_eq!(zone, registry_a, "DNS and the registry agree");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_server_killed_is_503_graph_unavailable_and_nothing_is_accepted() {
    let mut sbot = Sbot::start();
    let secret = std::fs::read_to_string(sbot.secret_path()).expect("sbot secret");
    let pub_key = parse_secret_file(&secret).expect("sbot secret parses");
    let mut cs = clients(3, "ssbload");
    for c in &cs {
        sbot.follow(&c.keypair.id());
    }
    let mut server = RealServer::start(
        pub_key,
        Setup {
            dns: None,
            // No cache: every update asks ssb-server.
            graph: &format!(
                "backend = \"ssb\"\naddr = \"127.0.0.1:{}\"\ncache_seconds = 0",
                sbot.port()
            ),
            top: "",
            tables: LOAD_LIMITS,
        },
    );
    for (i, c) in cs.iter_mut().enumerate() {
        let r = c
            .update(&server, Some(addr(i, 0)), None)
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "{r:?}");
    }
    let before = server.registry();
    let mut sbot = tokio::task::spawn_blocking(move || {
        sbot.kill();
        sbot
    })
    .await
    .expect("kill");
    let mut refused = 0;
    for round in 1..=3 {
        for (i, c) in cs.iter_mut().enumerate() {
            let r = c
                .update(&server, Some(addr(i, round)), None)
                .await
                .expect("answer");
            assert_eq!((r.status, r.error()), (503, "graph_unavailable"), "{r:?}");
            assert!(r.retry_after.is_some(), "Retry-After");
            refused += 1;
        }
    }
    assert_eq!(server.registry(), before, "nothing was accepted");
    let dns = server.dns.expect("embedded");
    for (i, c) in cs.iter().enumerate() {
        let fqdn = c.fqdn();
        let a = tokio::task::spawn_blocking(move || dig_tcp(dns, &fqdn, "A"))
            .await
            .expect("dig");
        assert_eq!(a, [addr(i, 0).to_string()], "DNS unchanged");
    }
    // ssb-server comes back: the next updates are accepted.
    let down_for = Instant::now();
    let sbot = tokio::task::spawn_blocking(move || {
        sbot.restart();
        sbot
    })
    .await
    .expect("restart");
    let mut recovered = Vec::new();
    for (i, c) in cs.iter_mut().enumerate() {
        let started = Instant::now();
        loop {
            let r = c
                .update(&server, Some(addr(i, 9)), None)
                .await
                .expect("answer");
            if r.status == 200 {
                break;
            }
            assert_eq!(r.error(), "graph_unavailable", "{r:?}");
            assert!(started.elapsed() < Duration::from_secs(15), "recovers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        recovered.push(started.elapsed());
    }
    println!(
        "ssb-server killed: {refused} updates refused 503 graph_unavailable (Retry-After), registry and DNS unchanged; \
         after its restart ({:?}) every client accepted again (first after {:?})",
        down_for.elapsed(),
        recovered[0]
    );
    for (i, c) in cs.iter().enumerate() {
        let fqdn = c.fqdn();
        let a = tokio::task::spawn_blocking(move || dig_tcp(dns, &fqdn, "A"))
            .await
            .expect("dig");
        assert_eq!(a, [addr(i, 9).to_string()]);
    }
    drop(sbot);
    server.stop();
}

/// SIGKILLs the server during a load of concurrent updates (half of them
/// for new names), starts it again, and checks that every update answered
/// 200 is in the registry and in DNS, and nothing else is. `lookup` asks
/// DNS for a label's A record; `zone` lists every name DNS holds, where
/// the backend can tell.
async fn sigkill_during_load(
    mut server: RealServer,
    cs: Vec<Client>,
    lookup: impl Fn(&str) -> Option<String>,
    zone: impl Fn() -> Option<BTreeMap<String, String>>,
    what: &str,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&server, cs, stop.clone(), true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client").1);
    }
    server.launch();
    let expect = expectations(&all);
    let registry = server.registry();
    let ok = all
        .iter()
        .filter(|s| matches!(s.2, Outcome::Answered(200, ..)))
        .count();
    let unanswered = all.iter().filter(|s| s.2 == Outcome::NoAnswer).count();
    let mut in_flight_committed = 0;
    // Names DNS answers that the registry does not hold.
    let mut orphans = Vec::new();
    for (name, (last_ok, maybe)) in &expect {
        let held = registry.get(name).map(|(ip, _)| ip.expect("A"));
        match (held, last_ok) {
            (Some(ip), Some(ok)) if ip == *ok => {}
            (Some(ip), _) if maybe.contains(&ip) => in_flight_committed += 1,
            (None, None) => {}
            other => {
                panic!("{name}: registry {other:?}, last 200 {last_ok:?}, unanswered {maybe:?}")
            }
        }
        let dns = lookup(name);
        match held {
            Some(ip) => assert_eq!(
                dns,
                Some(ip.to_string()),
                "{name}: DNS and the registry agree after the restart"
            ),
            None if dns.is_some() => orphans.push(name.clone()),
            None => {}
        }
    }
    assert!(
        registry.keys().all(|n| expect.contains_key(n)),
        "the registry holds only names that were asked for"
    );
    if let Some(zone) = zone() {
        let registry_a: BTreeMap<String, String> = registry
            .iter()
            .map(|(n, (ip, _))| (n.clone(), ip.expect("A").to_string()))
            .collect();
        for (name, ip) in &registry_a {
            assert_eq!(
                zone.get(name),
                Some(ip),
                "{name}: in the zone as in the registry"
            );
        }
        for name in zone.keys().filter(|n| !registry_a.contains_key(*n)) {
            assert!(expect.contains_key(name), "{name}: nobody asked for it");
            if !orphans.contains(name) {
                orphans.push(name.clone());
            }
        }
    }
    println!(
        "server SIGKILLed during a load ({what}): {} updates sent, {ok} answered 200, {unanswered} unanswered; \
         after the restart {} names, every 200 in the registry and DNS, {in_flight_committed} unanswered one(s) committed, \
         {} record(s) in DNS the registry does not hold {orphans:?}",
        all.len(),
        registry.len(),
        orphans.len()
    );
    assert!(
        orphans.is_empty(),
        "DNS holds names the registry does not: {orphans:?}"
    );
    assert!(ok > 20, "a real load ran before the kill: {ok}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkilled_during_a_load_keeps_every_200_embedded() {
    let cs = clients(8, "crash");
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &allowlist(&cs),
            top: "max_names_per_key = 1000",
            tables: LOAD_LIMITS,
        },
    );
    let dns = server.dns.expect("embedded");
    sigkill_during_load(
        server,
        cs,
        |name| {
            dig_tcp(dns, &format!("{name}.{DOMAIN}"), "A")
                .into_iter()
                .next()
        },
        || None,
        "embedded",
    )
    .await;
}

/// Half of the load registers new names, so the kill nearly always lands
/// between BIND's write of a new name and its commit: before the registry
/// noted new names ahead of the DNS write (`Registry::mark_pending`), such
/// a record stayed in the zone for good (2–3 of ~80 names a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkilled_during_a_load_keeps_every_200_and_nothing_else_bind_local() {
    let named = Named::start();
    let cs = clients(8, "crash");
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: Some(&bind_local(&named)),
            graph: &allowlist(&cs),
            top: "max_names_per_key = 1000",
            tables: LOAD_LIMITS,
        },
    );
    sigkill_during_load(
        server,
        cs,
        |name| {
            named
                .dig(&format!("{name}.{DOMAIN}"), "A")
                .into_iter()
                .next()
        },
        || Some(bind_zone(&named)),
        "bind-local",
    )
    .await;
}

/// A no-change update's `seq` is not awaited on disk (it goes with the
/// next commit, at most `DEFER` later). A clean stop still writes it, so
/// its replay is refused after the restart. A SIGKILL right after its 200
/// may lose it, and then loses nothing that matters: the records are the
/// ones the update confirmed, a replay of it changes nothing, and the
/// key's next update is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_change_seq_survives_a_clean_stop_and_a_kill_loses_nothing_that_matters() {
    let mut pi = Client::new("steady", IpAddr::from([127, 0, 3, 1]));
    let mut server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &allowlist(std::slice::from_ref(&pi)),
            top: "",
            tables: LOAD_LIMITS,
        },
    );
    let home = Some(Ipv4Addr::new(24, 12, 12, 12));
    let first = pi.update(&server, home, None).await.expect("first");
    assert_eq!(
        (first.status, &first.json["changed"]),
        (200, &serde_json::json!(true))
    );
    for (stop, what) in [(true, "SIGTERM"), (false, "SIGKILL")] {
        let body = pi.update_body(&server.keypair, home, None);
        let got = request(pi.source, server.http, "POST", "/update", &body)
            .await
            .expect("no-change");
        assert_eq!(
            (got.status, &got.json["changed"]),
            (200, &serde_json::json!(false)),
            "{}",
            got.json
        );
        if stop {
            server.stop();
        } else {
            server.kill();
        }
        server.launch();
        let replay = request(pi.source, server.http, "POST", "/update", &body)
            .await
            .expect("replay");
        if stop {
            assert_eq!(
                (replay.status, replay.error()),
                (409, "stale_seq"),
                "after a {what}"
            );
        } else {
            // Lost or not, the replay changes nothing.
            assert!(
                (replay.status, replay.error()) == (409, "stale_seq")
                    || (replay.status == 200 && replay.json["changed"] == false),
                "after a {what}: {} {}",
                replay.status,
                replay.json
            );
        }
        assert_eq!(
            server.registry().get("steady"),
            Some(&(home, None)),
            "after a {what}"
        );
        let next = pi.update(&server, home, None).await.expect("next");
        assert_eq!(
            next.status, 200,
            "the key's next update after a {what}: {}",
            next.json
        );
    }
    server.stop();
}
