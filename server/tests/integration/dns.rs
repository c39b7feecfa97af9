//! The DNS backends against the real parts: `bind-local`, `nsupdate` and
//! `rfc2136` against BIND's `named` started by testkit, and the embedded
//! server asked by the real `dig`.
//!
//! The BIND tests are plain `#[test]`s with a small tokio runtime: testkit's
//! helpers block (they run `dig` and `nsupdate`), and a backend call is one
//! `block_on`. The embedded tests run the server on a runtime's worker
//! threads while the test thread runs `dig`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_server::config::DnsConfig;
use peach_dyndns_server::dns::{
    self, DnsError, EmbeddedDns, NameRecords, Nsupdate, Rfc2136, ZoneBackend, ZoneChange,
};
use testkit::{DigReply, Named, TsigKey};
use tokio::runtime::Runtime;

/// The address set first, and the one that replaces it.
const IP_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// See [`IP_1`].
const IP_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 8);
/// The IPv6 address set first.
const IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
/// How long a secondary may take to follow the primary: NOTIFY and IXFR
/// take milliseconds, a loaded machine building Rust is slower.
const SECONDARY_WAIT: Duration = Duration::from_secs(20);
/// "Quickly" for an error against a stopped server: a connected UDP socket
/// hears ICMP port unreachable at once; well under the 2 × 2 s timeout.
const FAST_FAILURE: Duration = Duration::from_millis(1500);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn set(name: &str, ip: Option<Ipv4Addr>, ip6: Option<Ipv6Addr>) -> ZoneChange {
    ZoneChange::Set(NameRecords {
        name: name.into(),
        ip,
        ip6,
        ttl: 60,
    })
}

fn remove(name: &str) -> ZoneChange {
    ZoneChange::Remove { name: name.into() }
}

fn fqdn(named: &Named, label: &str) -> String {
    format!("{label}.{}", named.zone())
}

fn bind_local(named: &Named) -> Rfc2136 {
    Rfc2136::bind_local(named.addr(), named.zone(), &named.session_key_path()).expect("bind-local")
}

fn rfc2136(named: &Named) -> Rfc2136 {
    let key = named.tsig_key();
    Rfc2136::with_key_file(
        named.addr(),
        named.zone(),
        &named.tsig_key_path(),
        &key.name,
        &key.algorithm,
    )
    .expect("rfc2136")
}

fn nsupdate(named: &Named, session_key: &Path) -> Nsupdate {
    Nsupdate::new(
        Path::new("nsupdate"),
        named.port(),
        session_key,
        named.zone(),
    )
    .expect("nsupdate")
}

/// Set with A+AAAA → both resolve; Set with A only → AAAA gone; Remove →
/// both gone. The same for every backend.
fn set_replace_remove(named: &Named, backend: &dyn ZoneBackend, label: &str) {
    let rt = runtime();
    let name = fqdn(named, label);
    rt.block_on(backend.apply(&set(label, Some(IP_1), Some(IP6))))
        .unwrap_or_else(|e| panic!("{}: set: {e}", backend.kind()));
    assert_eq!(named.dig(&name, "A"), [IP_1.to_string()]);
    assert_eq!(named.dig(&name, "AAAA"), [IP6.to_string()]);

    rt.block_on(backend.apply(&set(label, Some(IP_2), None)))
        .unwrap_or_else(|e| panic!("{}: replace: {e}", backend.kind()));
    assert_eq!(named.dig(&name, "A"), [IP_2.to_string()]);
    assert!(named.dig(&name, "AAAA").is_empty(), "AAAA removed");

    rt.block_on(backend.apply(&remove(label)))
        .unwrap_or_else(|e| panic!("{}: remove: {e}", backend.kind()));
    assert!(named.dig(&name, "A").is_empty());
    assert!(named.dig(&name, "AAAA").is_empty());
    // Removing what is not there is fine (re-applying must be idempotent).
    rt.block_on(backend.apply(&remove(label)))
        .unwrap_or_else(|e| panic!("{}: remove again: {e}", backend.kind()));
}

#[test]
fn bind_local_sets_replaces_and_removes() {
    let named = Named::start();
    let backend = bind_local(&named);
    assert_eq!(backend.kind(), "bind-local");
    set_replace_remove(&named, &backend, "pi");
}

#[test]
fn rfc2136_sets_replaces_and_removes() {
    let named = Named::start();
    let backend = rfc2136(&named);
    assert_eq!(backend.kind(), "rfc2136");
    set_replace_remove(&named, &backend, "pi");
}

#[test]
fn rfc2136_reads_a_bare_base64_secret() {
    let named = Named::start();
    let dir = tempfile::tempdir().expect("tmp");
    let key = named.tsig_key();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{}\n", key.secret)).expect("write");
    let backend =
        Rfc2136::with_key_file(named.addr(), named.zone(), &path, &key.name, "hmac-sha256")
            .expect("rfc2136");
    set_replace_remove(&named, &backend, "bare");
}

#[test]
fn nsupdate_sets_replaces_and_removes() {
    let named = Named::start();
    let backend = nsupdate(&named, &named.session_key_path());
    assert_eq!(backend.kind(), "nsupdate");
    set_replace_remove(&named, &backend, "pi");
}

#[test]
fn build_makes_each_backend_from_config() {
    let named = Named::start();
    let rt = runtime();
    let key = named.tsig_key();
    let configs = [
        DnsConfig::BindLocal {
            server: named.addr(),
            session_key: named.session_key_path(),
        },
        DnsConfig::Nsupdate {
            program: PathBuf::from("nsupdate"),
            port: named.port(),
            session_key: named.session_key_path(),
        },
        DnsConfig::Rfc2136 {
            server: named.addr(),
            key_name: key.name.clone(),
            key_algorithm: key.algorithm.clone(),
            key_file: named.tsig_key_path(),
        },
    ];
    for (i, cfg) in configs.iter().enumerate() {
        let backend = dns::build(cfg, named.zone()).expect("build");
        assert!(backend.embedded.is_none());
        let label = format!("built{i}");
        rt.block_on(backend.zone.apply(&set(&label, Some(IP_1), None)))
            .unwrap_or_else(|e| panic!("{}: {e}", backend.zone.kind()));
        assert_eq!(named.dig(&fqdn(&named, &label), "A"), [IP_1.to_string()]);
    }
    let embedded = dns::build(&DnsConfig::default(), "peach.dinosaur.is").expect("embedded");
    assert_eq!(embedded.zone.kind(), "embedded");
    assert!(embedded.embedded.is_some());

    // A key file that is not there stops the start, naming the file.
    let missing = DnsConfig::BindLocal {
        server: named.addr(),
        session_key: PathBuf::from("/nonexistent/session.key"),
    };
    let err = dns::build(&missing, named.zone()).expect_err("no key file");
    assert!(matches!(err, DnsError::KeyFileRead { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/session.key"),
        "{err}"
    );
}

/// A key file with the right name and a wrong secret.
fn wrong_secret_file(dir: &Path, name: &str) -> PathBuf {
    let wrong = TsigKey::generate(name);
    let path = dir.join(format!("{name}.wrong.key"));
    std::fs::write(&path, wrong.to_conf()).expect("write key");
    path
}

#[test]
fn rfc2136_with_a_wrong_key_is_refused_and_changes_nothing() {
    let named = Named::start();
    let rt = runtime();
    let name = fqdn(&named, "pi");
    rt.block_on(rfc2136(&named).apply(&set("pi", Some(IP_1), None)))
        .expect("set with the right key");
    let dir = tempfile::tempdir().expect("tmp");
    let key = named.tsig_key();

    // Right name, wrong secret: BADSIG.
    let path = wrong_secret_file(dir.path(), &key.name);
    let backend =
        Rfc2136::with_key_file(named.addr(), named.zone(), &path, &key.name, "hmac-sha256")
            .expect("client");
    let err = rt
        .block_on(backend.apply(&set("pi", Some(IP_2), None)))
        .expect_err("wrong secret");
    match &err {
        DnsError::KeyRejected { tsig_error, .. } => assert_eq!(tsig_error, "BADSIG"),
        other => panic!("expected KeyRejected, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&named.addr().to_string()), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("secret differs"), "{message}");

    // A key named differently from any the server knows: BADKEY.
    let stranger = TsigKey::generate("stranger");
    let path = dir.path().join("stranger.key");
    std::fs::write(&path, stranger.to_conf()).expect("write key");
    let backend =
        Rfc2136::with_key_file(named.addr(), named.zone(), &path, "stranger", "hmac-sha256")
            .expect("client");
    let err = rt
        .block_on(backend.apply(&remove("pi")))
        .expect_err("unknown key");
    assert!(
        matches!(&err, DnsError::KeyRejected { tsig_error, .. } if tsig_error == "BADKEY"),
        "{err}"
    );

    assert_eq!(named.dig(&name, "A"), [IP_1.to_string()], "nothing changed");
}

#[test]
fn bind_local_with_a_stale_session_key_is_refused_and_changes_nothing() {
    let named = Named::start();
    let rt = runtime();
    let name = fqdn(&named, "pi");
    rt.block_on(bind_local(&named).apply(&set("pi", Some(IP_1), None)))
        .expect("set");
    let dir = tempfile::tempdir().expect("tmp");
    let path = wrong_secret_file(dir.path(), "local-ddns");
    let backend = Rfc2136::bind_local(named.addr(), named.zone(), &path).expect("client");
    let err = rt
        .block_on(backend.apply(&set("pi", Some(IP_2), None)))
        .expect_err("stale key");
    assert!(
        matches!(&err, DnsError::KeyRejected { tsig_error, .. } if tsig_error == "BADSIG"),
        "{err}"
    );
    assert_eq!(named.dig(&name, "A"), [IP_1.to_string()], "nothing changed");
}

#[test]
fn nsupdate_with_a_wrong_key_fails_with_its_message_and_changes_nothing() {
    let named = Named::start();
    let rt = runtime();
    let name = fqdn(&named, "pi");
    rt.block_on(nsupdate(&named, &named.session_key_path()).apply(&set("pi", Some(IP_1), None)))
        .expect("set");
    let dir = tempfile::tempdir().expect("tmp");
    let path = wrong_secret_file(dir.path(), "local-ddns");
    let err = rt
        .block_on(nsupdate(&named, &path).apply(&set("pi", Some(IP_2), None)))
        .expect_err("wrong key");
    let message = err.to_string();
    assert!(matches!(err, DnsError::Program { .. }), "{message}");
    assert!(message.contains("nsupdate -l -4"), "{message}");
    assert!(
        message.contains("BADSIG") || message.to_lowercase().contains("tsig"),
        "nsupdate's own words are in the error: {message}"
    );
    assert_eq!(named.dig(&name, "A"), [IP_1.to_string()], "nothing changed");
}

#[test]
fn rfc2136_reports_the_rcode_of_a_refused_update() {
    let named = Named::start();
    let rt = runtime();
    let key = named.tsig_key();
    // named is not authoritative for this zone: NOTAUTH.
    let backend = Rfc2136::with_key_file(
        named.addr(),
        "elsewhere.example",
        &named.tsig_key_path(),
        &key.name,
        &key.algorithm,
    )
    .expect("client");
    let err = rt
        .block_on(backend.apply(&set("pi", Some(IP_1), None)))
        .expect_err("not our zone");
    match &err {
        DnsError::Rejected { rcode, fqdn, .. } => {
            assert_eq!(rcode, "NOTAUTH");
            assert_eq!(fqdn, "pi.elsewhere.example.");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn a_stopped_named_is_reported_quickly_by_every_backend() {
    let named = Named::start();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    // nsupdate reads the key at each run: keep a copy past named's exit.
    let session_copy = dir.path().join("session.key");
    std::fs::copy(named.session_key_path(), &session_copy).expect("copy session key");
    let backends: Vec<Box<dyn ZoneBackend>> = vec![
        Box::new(bind_local(&named)),
        Box::new(rfc2136(&named)),
        Box::new(nsupdate(&named, &session_copy)),
    ];
    let addr = named.addr();
    drop(named);
    for backend in &backends {
        let start = Instant::now();
        let err = rt
            .block_on(backend.apply(&set("pi", Some(IP_1), None)))
            .expect_err("named is stopped");
        let took = start.elapsed();
        assert!(
            took < FAST_FAILURE,
            "{}: took {took:?}: {err}",
            backend.kind()
        );
        if backend.kind() != "nsupdate" {
            assert!(matches!(err, DnsError::Unreachable { .. }), "{err}");
            assert!(err.to_string().contains(&addr.to_string()), "{err}");
        } else {
            assert!(matches!(err, DnsError::Program { .. }), "{err}");
        }
    }
}

#[test]
fn bind_local_follows_the_session_key_across_a_named_restart() {
    let mut named = Named::start();
    let rt = runtime();
    let backend = bind_local(&named);
    let before = named.session_key();
    rt.block_on(backend.apply(&set("pi", Some(IP_1), None)))
        .expect("set before the restart");
    named.restart();
    assert_ne!(named.session_key(), before, "named wrote a new session key");
    rt.block_on(backend.apply(&set("pi", Some(IP_2), None)))
        .expect("set after the restart: the key file is read again");
    assert_eq!(named.dig(&fqdn(&named, "pi"), "A"), [IP_2.to_string()]);
}

#[test]
fn a_secondary_follows_updates_by_notify_and_ixfr() {
    let primary = Named::start();
    let secondary = Named::start_secondary(&primary);
    let rt = runtime();
    let name = fqdn(&primary, "pi");
    rt.block_on(bind_local(&primary).apply(&set("pi", Some(IP_1), Some(IP6))))
        .expect("set");
    secondary.wait_for(&name, "A", &[&IP_1.to_string()], SECONDARY_WAIT);
    secondary.wait_for(&name, "AAAA", &[&IP6.to_string()], SECONDARY_WAIT);
    rt.block_on(rfc2136(&primary).apply(&remove("pi")))
        .expect("remove");
    secondary.wait_for(&name, "A", &[], SECONDARY_WAIT);
}

/// The throughput of the in-process client against testkit's named:
/// `cargo test -p peach-dyndns-server --test integration dns::update_rate -- --nocapture`.
/// named fsyncs its journal twice per update, so on a disk shared with
/// builds this measures the disk as much as the client (150–1,200/s seen
/// here; with named's directory on tmpfs, `TMPDIR=/dev/shm`, 3,000–6,000/s).
/// The floor only catches a client that waits on timeouts or spawns a
/// process per update (nsupdate: about 25/s).
#[test]
fn update_rate_of_bind_local() {
    let named = Named::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let backend: Arc<dyn ZoneBackend> = Arc::new(bind_local(&named));
    for tasks in [1, 16] {
        let report = rt.block_on(dns::measure_rate(
            Arc::clone(&backend),
            &format!("rate{tasks}-"),
            tasks,
            Duration::from_secs(3),
        ));
        println!(
            "bind-local, {tasks} task(s): {} updates in {:?} = {:.0}/s, {} failed{}",
            report.ok,
            report.elapsed,
            report.per_second(),
            report.failed,
            report
                .first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        assert_eq!(report.failed, 0, "{:?}", report.first_error);
        assert!(report.per_second() > 40.0, "{report:?}");
    }
}

// ---------------------------------------------------------------------
// The embedded server, asked by the real dig.

/// `dig @127.0.0.1 -p <port> +norecurse +tries=1 <extra…> <name> <type>`,
/// its reply taken apart.
fn dig(port: u16, extra: &[&str], name: &str, rtype: &str) -> DigReply {
    testkit::dig(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), name, rtype)
        .norecurse()
        .tries(1)
        .flags(extra)
        .reply()
}

/// An embedded server on loopback, served by its own runtime's threads.
struct Embedded {
    dns: EmbeddedDns,
    udp: SocketAddr,
    tcp: SocketAddr,
    rt: Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Embedded {
    fn start(nameservers: &[String]) -> Embedded {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dns = EmbeddedDns::new("peach.dinosaur.is", nameservers, None).expect("embedded");
        let (udp, tcp) = rt.block_on(async {
            // One port for both, like a real DNS server: dig +tcp uses -p.
            loop {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("udp");
                let port = udp.local_addr().expect("addr").port();
                if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    break (udp, tcp);
                }
            }
        });
        let (udp_addr, tcp_addr) = (
            udp.local_addr().expect("addr"),
            tcp.local_addr().expect("addr"),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = dns.clone();
        rt.spawn(async move {
            server
                .serve(udp, tcp, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Embedded {
            dns,
            udp: udp_addr,
            tcp: tcp_addr,
            rt,
            stop: Some(stop),
        }
    }

    fn apply(&self, change: &ZoneChange) {
        self.rt
            .block_on(self.dns.apply(change))
            .expect("embedded apply");
    }

    fn port(&self) -> u16 {
        self.udp.port()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[test]
fn embedded_answers_dig_over_udp_and_tcp() {
    let server = Embedded::start(&[]);
    server.apply(&set("pi", Some(IP_1), Some(IP6)));
    server.apply(&set("v4only", Some(IP_2), None));
    let port = server.port();
    for transport in [&[][..], &["+tcp"][..]] {
        let a = dig(port, transport, "pi.peach.dinosaur.is", "A");
        assert_eq!(a.status, "NOERROR", "{transport:?} {a:?}");
        assert!(a.flags.contains(&"aa".to_string()), "{a:?}");
        assert_eq!(a.answer, [IP_1.to_string()]);
        let aaaa = dig(port, transport, "PI.peach.dinosaur.is", "AAAA");
        assert_eq!(aaaa.answer, [IP6.to_string()]);
        let soa = dig(port, transport, "peach.dinosaur.is", "SOA");
        assert_eq!(soa.answer.len(), 1, "{soa:?}");
        assert!(
            soa.answer[0].starts_with("ns1.peach.dinosaur.is. hostmaster.peach.dinosaur.is. "),
            "{soa:?}"
        );
        let ns = dig(port, transport, "peach.dinosaur.is", "NS");
        assert_eq!(ns.answer, ["ns1.peach.dinosaur.is."]);
        // The name exists, the type does not: NODATA with the SOA.
        let nodata = dig(port, transport, "v4only.peach.dinosaur.is", "AAAA");
        assert_eq!(
            (nodata.status.as_str(), nodata.answer.len()),
            ("NOERROR", 0)
        );
        assert_eq!(nodata.authority, ["SOA"]);
        let nx = dig(port, transport, "nobody.peach.dinosaur.is", "A");
        assert_eq!(nx.status, "NXDOMAIN", "{nx:?}");
        assert!(nx.flags.contains(&"aa".to_string()));
        assert_eq!(nx.authority, ["SOA"]);
        let outside = dig(port, transport, "example.org", "A");
        assert_eq!(outside.status, "REFUSED", "{outside:?}");
        assert!(!outside.flags.contains(&"aa".to_string()));
        let any = dig(port, transport, "pi.peach.dinosaur.is", "ANY");
        assert_eq!(any.answer.len(), 2, "{any:?}");
        let txt = dig(port, transport, "pi.peach.dinosaur.is", "TXT");
        assert_eq!((txt.status.as_str(), txt.answer.len()), ("NOERROR", 0));
    }
    // The serial goes up with a change.
    let serial = |d: &DigReply| -> u64 {
        d.answer[0]
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .expect("serial")
    };
    let before = serial(&dig(port, &[], "peach.dinosaur.is", "SOA"));
    server.apply(&remove("pi"));
    let after = serial(&dig(port, &[], "peach.dinosaur.is", "SOA"));
    assert!(after > before, "{before} → {after}");
    assert_eq!(
        dig(port, &[], "pi.peach.dinosaur.is", "A").status,
        "NXDOMAIN"
    );
    assert_eq!(server.tcp.port(), port);
}

#[test]
fn embedded_truncates_plain_udp_and_dig_retries_over_tcp() {
    let nameservers: Vec<String> = (0..12)
        .map(|i| format!("ns{i}-{}.example{i}", "x".repeat(40)))
        .collect();
    let server = Embedded::start(&nameservers);
    let port = server.port();
    let cut = dig(port, &["+noedns", "+ignore"], "peach.dinosaur.is", "NS");
    assert!(cut.flags.contains(&"tc".to_string()), "{cut:?}");
    assert!(cut.answer.is_empty());
    let retried = dig(port, &["+noedns"], "peach.dinosaur.is", "NS");
    assert_eq!(retried.answer.len(), 12, "{retried:?}");
    let edns = dig(
        port,
        &["+bufsize=1232", "+ignore"],
        "peach.dinosaur.is",
        "NS",
    );
    assert!(!edns.flags.contains(&"tc".to_string()), "{edns:?}");
    assert_eq!(edns.answer.len(), 12);
}

#[test]
fn embedded_survives_garbage() {
    let server = Embedded::start(&[]);
    server.apply(&set("pi", Some(IP_1), None));
    let port = server.port();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 11],
        vec![0xff; 12],
        vec![0xff; 512],
        // A header promising 65535 of everything.
        vec![1, 2, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A name with a compression pointer to itself.
        vec![1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A label longer than the packet.
        vec![1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'],
    ];
    // Pseudo-random junk (xorshift), reproducible.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [13usize, 40, 100, 300, 1500, 4000] {
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p.push(x.to_le_bytes()[0]);
        }
        p[2] &= 0x7f; // A query, so the server reads past the header.
        packets.push(p);
    }
    for p in &packets {
        socket.send_to(p, server.udp).expect("send");
    }
    // Whatever came back is at most a FORMERR header per packet.
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        assert!(len >= 12, "a reply is at least a header");
        assert_eq!(buf[2] & 0x80, 0x80, "replies are responses");
    }
    // Garbage over TCP too: a length, then junk; then a connection that
    // says it will send 100 bytes and sends 3.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.tcp).expect("connect");
        stream.write_all(&[0, 5, 1, 2, 3, 4, 5]).expect("write");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut reply = [0u8; 64];
        let _ = stream.read(&mut reply);
        let mut half = std::net::TcpStream::connect(server.tcp).expect("connect");
        half.write_all(&[0, 100, 1, 2, 3]).expect("write");
    }
    // Still serving, both ways.
    assert_eq!(
        dig(port, &[], "pi.peach.dinosaur.is", "A").answer,
        [IP_1.to_string()]
    );
    assert_eq!(
        dig(port, &["+tcp"], "pi.peach.dinosaur.is", "A").answer,
        [IP_1.to_string()]
    );
}

#[test]
fn embedded_applies_thousands_of_updates_a_second() {
    let server = Embedded::start(&[]);
    let backend: Arc<dyn ZoneBackend> = Arc::new(server.dns.clone());
    let report = server.rt.block_on(dns::measure_rate(
        backend,
        "rate",
        16,
        Duration::from_millis(500),
    ));
    println!(
        "embedded, 16 tasks: {} updates in {:?} = {:.0}/s",
        report.ok,
        report.elapsed,
        report.per_second()
    );
    assert_eq!(report.failed, 0);
    assert!(report.per_second() > 5_000.0, "{report:?}");
    // And the table answers while it is being written.
    server.apply(&set("after", Some(IP_1), None));
    assert_eq!(
        dig(server.port(), &[], "after.peach.dinosaur.is", "A").answer,
        [IP_1.to_string()]
    );
}
