//! The embedded DNS as a primary, with a real BIND `named` as its
//! secondary on loopback, configured with the snippet docs/operator.md
//! gives ("Secondaries"): it transfers the zone, hears NOTIFY after an
//! update and answers the new address within 2 s; a release goes too;
//! after the server restarts the secondary still follows (the serial did
//! not go back); an address that is not a secondary is REFUSED.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::Op;
use peach_dyndns_server::{build_state, run, Listeners, State};
use testkit::{NamedWith, TsigKey};
use tokio::runtime::Runtime;

use crate::common::*;

/// How long the secondary may take to show a change: the issue's bound.
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(2);
/// The name of the transfer key, as in docs/operator.md.
pub const XFR_KEY: &str = "peach-xfr";

/// The fenced block after `<!-- tested: NAME -->` in docs/operator.md.
pub fn snippet(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator.md");
    let text = std::fs::read_to_string(&path).expect("docs/operator.md");
    let marker = format!("<!-- tested: {name} -->");
    let rest = &text[text
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/operator.md has no {marker}"))..];
    let body = rest
        .split("```")
        .nth(1)
        .expect("a fenced block after the marker");
    // Drop the info string (```toml, ```text) on the opening line.
    body.split_once('\n').map_or("", |(_, b)| b).to_string()
}

/// The secondary's named.conf text from the docs, for a primary on
/// `primary_port` and the key `key`; `extra` is added to the zone
/// statement (the signing secondary's lines).
pub fn secondary_conf(name: &str, primary_port: u16, key: &TsigKey) -> String {
    snippet(name)
        .replace(
            "192.0.2.10 port 53",
            &format!("127.0.0.1 port {primary_port}"),
        )
        .replace("PASTE-THE-SECRET-FROM-tsig-keygen", &key.secret)
        .replace("/var/cache/bind", "{dir}")
}

/// The pub with the embedded DNS, served by `run` on fixed ports (so it
/// can be restarted where its secondary looks for it).
pub struct Primary {
    /// The server's threads.
    pub rt: Runtime,
    /// The state, for posting updates through the real router.
    pub state: Arc<State>,
    /// The pub's key (updates are sealed to it).
    pub keypair: Keypair,
    /// Stops `run`.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// `run`'s task.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Primary {
    /// Starts the server with these tables in `dir` (the pub's secret is
    /// made there the first time).
    pub fn start(dir: &Path, tables: &str) -> Primary {
        let secret = dir.join("secret");
        if !secret.exists() {
            testkit::write_secret(&secret, &Keypair::generate().to_secret_file());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = config(dir, "", tables);
        let (state, embedded) = build_state(config).expect("state");
        let keypair = state.keypair.clone();
        let state = Arc::new(state);
        let listeners = rt
            .block_on(Listeners::bind(&state.config))
            .expect("listeners");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn({
            let state = Arc::clone(&state);
            async move {
                run(state, embedded, listeners, async {
                    let _ = stopped.await;
                })
                .await
                .expect("run");
            }
        });
        Primary {
            rt,
            state,
            keypair,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Posts a signed update or release and expects 200.
    pub fn post(&self, pi: &Keypair, name: &str, ip: Option<Ipv4Addr>, seq: u64) {
        let mut msg = update(pi, name, ip.unwrap_or(Ipv4Addr::LOCALHOST), seq);
        if ip.is_none() {
            msg.op = Op::Release;
            msg.ip = None;
        }
        let (status, json, _) = self
            .rt
            .block_on(post(&self.state, &body(&msg, pi, &self.keypair)));
        assert_eq!(status, 200, "{json}");
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            self.rt.block_on(task).expect("run ended");
        }
    }
}

/// The `[dns]` and `[graph]` tables: embedded on `port` with name server
/// `localhost`, one secondary
/// at `secondary_port` with the key in `key_file`, `pi` allowed.
pub fn tables(
    port: u16,
    secondary_port: u16,
    key_file: &Path,
    signs: bool,
    pi: &Keypair,
) -> String {
    format!(
        // The name server outside the zone, as docs/operator.md asks (a
        // signing secondary refuses an in-zone NS without an address), and
        // `localhost` so that `check` resolves it from /etc/hosts, with no
        // query off this machine.
        "[dns]\nbackend = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n\
         nameservers = [\"localhost\"]\n\
         [[dns.secondaries]]\naddress = \"127.0.0.1:{secondary_port}\"\n\
         tsig_key = {}\nsigns = {signs}\n\
         [graph]\nbackend = \"allowlist\"\nallow = [\"{}\"]\n",
        testkit::toml_string(key_file.display()),
        pi.public()
    )
}

/// The serial a server at `addr` answers.
pub fn serial_at(addr: std::net::SocketAddr) -> u32 {
    let soa = testkit::dig(addr, DOMAIN, "SOA").norecurse().short();
    soa.first()
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA serial from {addr}: {soa:?}"))
}

/// What named logged about its last transfer ("N messages, N records, N bytes").
fn last_transfer(named: &NamedWith) -> String {
    named
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("Transfer completed"))
        .map(|l| {
            l.split("Transfer completed:")
                .nth(1)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "no transfer logged".into())
}

/// The response code of an unsigned AXFR over TCP from `source`.
fn axfr_rcode(
    rt: &Runtime,
    source: &str,
    to: std::net::SocketAddr,
) -> hickory_proto::op::ResponseCode {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut msg = Message::query();
    msg.add_query(Query::query(
        Name::from_ascii(format!("{DOMAIN}.")).expect("name"),
        RecordType::AXFR,
    ));
    let bytes = msg.to_vec().expect("encode");
    let mut framed = u16::try_from(bytes.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&bytes);
    let from: std::net::SocketAddr = format!("{source}:0").parse().expect("addr");
    rt.block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(from).expect("bind");
        let mut stream = socket.connect(to).await.expect("connect");
        stream.write_all(&framed).await.expect("write");
        let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16())
            .await
            .expect("an answer")
            .expect("length");
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.expect("reply");
        Message::from_vec(&reply)
            .expect("decode")
            .metadata
            .response_code
    })
}

/// The record count of named's last transfer.
fn transfer_records(named: &NamedWith) -> usize {
    let last = last_transfer(named);
    last.split(", ")
        .find_map(|part| part.strip_suffix(" records"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {last:?}"))
}

#[test]
fn a_bind_secondary_follows_the_embedded_primary_across_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = TsigKey::generate(XFR_KEY);
    let key_file = dir.path().join("peach-xfr.key");
    testkit::write_secret(&key_file, &key.to_conf());
    let (port, secondary_port) = (testkit::free_port(), testkit::free_port());
    let pi = Keypair::generate();
    let tables = tables(port, secondary_port, &key_file, false, &pi);
    let primary = Primary::start(dir.path(), &tables);
    let primary_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // A big zone first, so the first transfer takes several messages.
    let many: Vec<_> = (0..2000)
        .map(|i| {
            peach_dyndns_server::dns::ZoneChange::Set(peach_dyndns_server::dns::NameRecords {
                name: format!("bulk{i}"),
                ip: Some(Ipv4Addr::new(24, 1, (i / 256) as u8, (i % 256) as u8)),
                ip6: Some(format!("2a01:4f8::{i:x}").parse().expect("ip6")),
                ttl: 60,
            })
        })
        .collect();
    primary
        .rt
        .block_on(primary.state.dns.apply_all(&many))
        .expect("bulk");

    let secondary = NamedWith::start(
        DOMAIN,
        secondary_port,
        &secondary_conf("secondary.conf", port, &key),
        &[],
    );
    assert_eq!(
        secondary.dig(&format!("bulk1999.{DOMAIN}"), "AAAA"),
        ["2a01:4f8::7cf"]
    );
    println!(
        "first transfer (AXFR, 2000 names): {}",
        last_transfer(&secondary)
    );

    // An update reaches the secondary by NOTIFY within the bound.
    let fqdn = format!("eb4890.{DOMAIN}");
    let started = Instant::now();
    primary.post(&pi, "eb4890", Some(Ipv4Addr::new(24, 12, 12, 12)), 1);
    let posted = started.elapsed();
    let took = secondary.wait_for(&fqdn, "A", &["24.12.12.12"], Duration::from_secs(10));
    println!(
        "update → secondary answers: {:?} after the 200 ({posted:?} for the update itself); {}",
        took,
        last_transfer(&secondary)
    );
    assert!(took < PROPAGATION_BOUND, "took {took:?}");
    // An IXFR: the change alone, not the 4,000 records of the zone.
    let records = transfer_records(&secondary);
    assert!(
        records < 10,
        "{records} records came: {}",
        last_transfer(&secondary)
    );
    // A second change, and a release.
    primary.post(&pi, "eb4890", Some(Ipv4Addr::new(24, 12, 12, 13)), 2);
    let took = secondary.wait_for(&fqdn, "A", &["24.12.12.13"], Duration::from_secs(10));
    assert!(took < PROPAGATION_BOUND, "took {took:?}");
    primary.post(&pi, "eb4890", None, 3);
    let took = secondary.wait_for(&fqdn, "A", &[], Duration::from_secs(10));
    println!("release → gone at the secondary: {took:?}");
    assert!(took < PROPAGATION_BOUND, "took {took:?}");

    // Only the secondary, with its key, may transfer.
    let refused = |source: &str, key: Option<&TsigKey>| {
        let mut dig = testkit::dig(primary_addr, DOMAIN, "AXFR").flags(&["-b", source]);
        let secret;
        if let Some(key) = key {
            secret = format!("hmac-sha256:{}:{}", key.name, key.secret);
            dig = dig.flags(&["-y", &secret]);
        }
        dig.short().join("\n")
    };
    let stranger = refused("127.0.0.2", None);
    assert!(stranger.contains("Transfer failed"), "{stranger}");
    assert_eq!(
        axfr_rcode(&primary.rt, "127.0.0.2", primary_addr),
        hickory_proto::op::ResponseCode::Refused,
        "an address that is not a secondary is REFUSED"
    );
    assert_eq!(
        axfr_rcode(&primary.rt, "127.0.0.1", primary_addr),
        hickory_proto::op::ResponseCode::Refused,
        "the secondary's address without its key is REFUSED"
    );
    let stranger_with_key = refused("127.0.0.2", Some(&key));
    assert!(
        stranger_with_key.contains("Transfer failed"),
        "{stranger_with_key}"
    );
    let unsigned = refused("127.0.0.1", None);
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");
    let signed = refused("127.0.0.1", Some(&key));
    assert!(
        signed.contains("24.1.7.207"),
        "the secondary's own address with the key transfers"
    );

    // A restart: the serial goes on from above, the secondary follows.
    let before = serial_at(primary_addr);
    assert_eq!(serial_at(secondary.addr()), before);
    primary.stop();
    let primary = Primary::start(dir.path(), &tables);
    let after = serial_at(primary_addr);
    assert!(
        after > before,
        "serial went from {before} to {after} across the restart"
    );
    let started = Instant::now();
    primary.post(&pi, "eb4890", Some(Ipv4Addr::new(24, 12, 12, 14)), 4);
    let took = secondary.wait_for(&fqdn, "A", &["24.12.12.14"], Duration::from_secs(10));
    println!(
        "after the restart: serial {before} → {}, update → secondary {took:?} ({:?} from the post); {}",
        serial_at(primary_addr),
        started.elapsed(),
        last_transfer(&secondary)
    );
    assert!(took < PROPAGATION_BOUND, "took {took:?}");
    // The bulk names were not in the registry: the restart dropped them,
    // and the secondary with them.
    assert!(secondary.dig(&format!("bulk7.{DOMAIN}"), "A").is_empty());
    primary.stop();
}

#[test]
fn the_documented_server_config_parses() {
    let text = format!(
        "domain = \"peach.dinosaur.is\"\n{}",
        snippet("server.toml secondaries")
    );
    let config = peach_dyndns_server::config::Config::from_str(&text, Path::new("operator.md"))
        .expect("the snippet in docs/operator.md is a valid config");
    let secondaries = config.secondaries();
    assert_eq!(secondaries.len(), 1);
    assert_eq!(
        secondaries[0].address,
        "198.51.100.53:53".parse().expect("addr")
    );
    assert!(secondaries[0].tsig_key.is_some());
}
