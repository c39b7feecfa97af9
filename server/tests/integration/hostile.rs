//! The hostile-input suite (issue 10): the real server binary, with its
//! embedded DNS and the social graph of a real ssb-server, on loopback, fed
//! a table of what an attacker sends: broken envelopes and base64, odd
//! JSON, names and addresses that must not get into the zone, replays and
//! reordered envelopes, keys the pub does not follow or blocks, names of
//! other keys, floods, and dyndns2 garbage. Each case asserts its documented
//! status and error code (DESIGN.md's table, docs/server.md) and what
//! changed: nothing, read back from the registry file (every row, every
//! key's `seq`) and asked of the server's DNS with `dig` (every registered
//! name and the case's own), or for the cases that must be accepted,
//! exactly their change. Every case comes from its own loopback address, so
//! the per-address budget of one case never answers for another; the
//! floods are the cases that spend it.
//!
//! The table of what was sent and what came back:
//! `cargo test -p peach-dyndns-server --test integration hostile -- --nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64URL};
use base64::Engine as _;
use peach_dyndns_protocol::canonical::{canonical_bytes, parse_strict};
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair, PublicKey};
use peach_dyndns_protocol::message::sign_value;
use peach_dyndns_protocol::rules::token_hash;
use peach_dyndns_protocol::seal;
use peach_dyndns_server::registry::{Entry, Registry};
use serde_json::{json, Value};
use testkit::{Sbot, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

use crate::common::DOMAIN;

const BIN: &str = env!("CARGO_BIN_EXE_peach-dyndns-server");

/// The per-address budget of failed requests in this server's config: the
/// floods send more than this.
const FAILURES_PER_MINUTE: u32 = 20;
/// The per-key burst in this server's config (refilled at 6 a minute):
/// high enough for the cases the owner's key sends (about 13 draw on it),
/// low enough for one flood to pass it.
const KEY_BURST: u32 = 30;
/// The owner's dyndns2 token.
const TOKEN: &str = "hostile-suite-token";

/// The server binary, running; killed (by its PID) when dropped.
struct Server {
    child: Child,
    http: SocketAddr,
    dns: SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }

    /// What the table shows: status and error code (`ok` for a success),
    /// or for dyndns2 status and the answer's words.
    fn summary(&self) -> String {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(json) if json.is_object() => match json["error"].as_str() {
                Some(code) => format!("{} {code}", self.status),
                None if json["ok"] == true => format!("{} ok", self.status),
                None => format!("{} {json}", self.status),
            },
            _ => format!("{} {}", self.status, first_words(&self.text())),
        }
    }
}

/// A dyndns2 answer's words without the addresses (`good 24.1.1.1` → `good`).
fn first_words(text: &str) -> String {
    text.lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sends `request` from `source` (any 127/8 address is loopback) and reads
/// the whole answer (every request says `Connection: close`).
async fn http(to: SocketAddr, source: Ipv4Addr, request: &[u8]) -> Reply {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .expect("bind");
    let mut stream = socket.connect(to).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

fn post_request(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST /update HTTP/1.1\r\nHost: pub\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn get_request(target: &str, authorization: Option<&str>) -> Vec<u8> {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("GET {target} HTTP/1.1\r\nHost: pub\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit u64")
}

/// What a request must get.
#[derive(Clone)]
struct Expect {
    status: u16,
    /// The JSON `error`, `ok`, or the dyndns2 words.
    code: &'static str,
}

fn expect(status: u16, code: &'static str) -> Expect {
    Expect { status, code }
}

/// What an accepted request changes: this name now has these records and
/// this owner; the owner's `seq` is `seq` (`None`: dyndns2 keeps it).
#[derive(Clone)]
struct Change {
    name: String,
    owner: String,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    seq: Option<u64>,
}

/// The registry as read from its file: every row and every key's `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    names: BTreeMap<String, Entry>,
    seqs: BTreeMap<String, Option<u64>>,
}

/// One row of the printed table.
struct Row {
    category: &'static str,
    sent: String,
    expected: String,
    got: String,
    failure: Option<String>,
}

/// The suite: the server, the registry it writes, the keys, and the rows.
struct Suite {
    server: Server,
    registry: Registry,
    pub_key: Keypair,
    /// Every key whose `seq` the snapshot reads.
    keys: Vec<String>,
    /// The next `seq` of each key, as a client keeps it.
    next_seq: BTreeMap<String, u64>,
    /// The next source address.
    source: u32,
    rows: Vec<Row>,
}

/// One row of the signed-update tables: `key` sends an update of `name`
/// (the default message of [`msg`], with a fresh `seq`) after `mutate`
/// changed it; `accepted`: the IPv4 address the name then holds (the case
/// must be accepted), `None`: it must change nothing.
struct Signed<'a> {
    category: &'static str,
    what: String,
    key: &'a Keypair,
    name: String,
    mutate: Box<dyn Fn(&mut Value) + 'a>,
    want: Expect,
    accepted: Option<&'static str>,
}

/// A row that sends [`msg`] as it is.
fn unchanged(_: &mut Value) {}

impl Suite {
    /// Sends one row of a signed-update table and checks it ([`Suite::case`]).
    async fn signed(&mut self, row: Signed<'_>) -> Reply {
        let pk = self.pub_key.public();
        let seq = self.seq(row.key);
        let mut m = msg(row.key, &pk, &row.name, seq);
        (row.mutate)(&mut m);
        let change = row.accepted.map(|v4| Change {
            name: row.name.clone(),
            owner: row.key.id(),
            ip: Some(v4.parse().expect("ip")),
            ip6: None,
            seq: Some(seq),
        });
        let request = post_request(&body(m, row.key, &pk));
        self.case(row.category, row.what, request, row.want, change, &row.name)
            .await
    }

    /// A loopback address no earlier case used.
    fn source(&mut self) -> Ipv4Addr {
        self.source += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + self.source)
    }

    fn seq(&mut self, kp: &Keypair) -> u64 {
        let next = self.next_seq.entry(kp.id()).or_insert_with(now_ms);
        let seq = (*next).max(now_ms());
        *next = seq + 1;
        seq
    }

    fn snapshot(&self) -> Snapshot {
        let names = self
            .registry
            .all()
            .expect("read the registry")
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let seqs = self
            .keys
            .iter()
            .map(|k| (k.clone(), self.registry.last_seq(k).expect("read a seq")))
            .collect();
        Snapshot { names, seqs }
    }

    /// What the server's DNS answers for `label` (`ANY`: its A and AAAA),
    /// over TCP (UDP answers are rate-limited per source, and this suite
    /// asks a lot).
    async fn dns(&self, label: &str) -> Vec<String> {
        let dns = self.server.dns;
        let fqdn = format!("{label}.{DOMAIN}");
        let mut out = tokio::task::spawn_blocking(move || {
            testkit::dig(dns, &fqdn, "ANY").tcp(true).tries(1).short()
        })
        .await
        .expect("dig");
        out.sort();
        out
    }

    /// `None` if DNS answers for `label` exactly what the registry holds.
    async fn dns_mismatch(&self, snapshot: &Snapshot, label: &str) -> Option<String> {
        let mut want: Vec<String> = snapshot
            .names
            .get(label)
            .map(|e| {
                e.ip.map(|a| a.to_string())
                    .into_iter()
                    .chain(e.ip6.map(|a| a.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        want.sort();
        let got = self.dns(label).await;
        (got != want)
            .then(|| format!("DNS answers {got:?} for {label}, the registry holds {want:?}"))
    }

    /// A row: DNS answers what the registry holds for every registered name.
    async fn sweep(&mut self, category: &'static str) {
        let snapshot = self.snapshot();
        let mut failure = None;
        for label in snapshot.names.keys() {
            if let Some(m) = self.dns_mismatch(&snapshot, label).await {
                failure.get_or_insert(m);
            }
        }
        let names = snapshot.names.len();
        self.rows.push(Row {
            category,
            sent: format!("dig every registered name ({names})"),
            expected: "the registry's records".into(),
            got: if failure.is_none() {
                "the same".into()
            } else {
                "different".into()
            },
            failure,
        });
    }

    /// Sends one request and checks the answer, the registry and DNS.
    async fn case(
        &mut self,
        category: &'static str,
        sent: impl Into<String>,
        request: Vec<u8>,
        want: Expect,
        change: Option<Change>,
        watch: &str,
    ) -> Reply {
        let source = self.source();
        self.case_from(source, category, sent, request, want, change, watch)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn case_from(
        &mut self,
        source: Ipv4Addr,
        category: &'static str,
        sent: impl Into<String>,
        request: Vec<u8>,
        want: Expect,
        change: Option<Change>,
        watch: &str,
    ) -> Reply {
        let before = self.snapshot();
        let reply = http(self.server.http, source, &request).await;
        let got = reply.summary();
        let expected = format!("{} {}", want.status, want.code);
        let mut failure = None;
        if got != expected {
            failure = Some(format!("answer {got:?} ({})", reply.text()));
        }
        let after = self.snapshot();
        let mut wanted = before.clone();
        if let Some(change) = &change {
            let old = before.names.get(&change.name);
            let entry = after.names.get(&change.name);
            let ok = entry.is_some_and(|e| {
                e.owner == change.owner && e.ip == change.ip && e.ip6 == change.ip6
            });
            if !ok {
                failure.get_or_insert(format!("registry row {entry:?}, not the change sent"));
            }
            if let Some(entry) = entry {
                wanted.names.insert(change.name.clone(), entry.clone());
            }
            if old.is_some_and(|o| o.created_ms != entry.map_or(0, |e| e.created_ms)) {
                failure.get_or_insert("the row's created_ms changed".into());
            }
            if let Some(seq) = change.seq {
                wanted.seqs.insert(change.owner.clone(), Some(seq));
            }
        }
        if after != wanted {
            failure.get_or_insert(format!(
                "the registry changed: before {before:?}, after {after:?}"
            ));
        }
        // DNS answers what the registry holds for the case's name (and the
        // changed one); `sweep` asks for every name after each category.
        let mut labels: Vec<String> = change.iter().map(|c| c.name.clone()).collect();
        // DNS names are case-insensitive; `dig` cannot ask for a label over
        // 63 bytes or one it would read as an option.
        let watch = watch.to_ascii_lowercase();
        let askable = !watch.is_empty()
            && watch.len() <= 63
            && !watch.starts_with('-')
            && watch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if askable && !labels.contains(&watch) {
            labels.push(watch);
        }
        for label in labels {
            if let Some(m) = self.dns_mismatch(&after, &label).await {
                failure.get_or_insert(m);
            }
        }
        self.rows.push(Row {
            category,
            sent: sent.into(),
            expected,
            got,
            failure,
        });
        reply
    }

    /// A row for a flood, checked by its caller.
    fn row(
        &mut self,
        category: &'static str,
        sent: String,
        expected: String,
        got: String,
        result: Result<(), String>,
    ) {
        self.rows.push(Row {
            category,
            sent,
            expected,
            got,
            failure: result.err(),
        });
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} | {:<62} | {:<28} | {:<28} | ok",
            "category", "sent", "expected", "got"
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<10} | {:<62} | {:<28} | {:<28} | {}",
                row.category,
                shorten(&row.sent, 62),
                row.expected,
                shorten(&row.got, 28),
                if row.failure.is_none() { "yes" } else { "NO" }
            );
        }
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for row in &self.rows {
            let c = counts.entry(row.category).or_default();
            c.0 += 1;
            c.1 += usize::from(row.failure.is_none());
        }
        let _ = writeln!(out, "\ncases per category (passed/tried):");
        for (category, (tried, passed)) in &counts {
            let _ = writeln!(out, "  {category:<10} {passed}/{tried}");
        }
        let passed = self.rows.iter().filter(|r| r.failure.is_none()).count();
        let _ = writeln!(out, "  {:<10} {passed}/{}", "all", self.rows.len());
        out
    }
}

fn shorten(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        clean.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// A message of `op` for `name` from `kp` to this pub, as JSON.
fn msg(kp: &Keypair, pub_id: &PublicKey, name: &str, seq: u64) -> Value {
    json!({
        "op": "update",
        "name": name,
        "domain": DOMAIN,
        "pub": pub_id.to_string(),
        "public_key": kp.id(),
        "seq": seq,
        "ip": "24.12.12.12",
    })
}

/// The signed plaintext of `msg`, signed by `kp`.
fn signed(msg: Value, kp: &Keypair) -> Vec<u8> {
    sign_value(msg, kp).to_json()
}

/// The signed plaintext with `raw_msg` sent exactly as written (escapes,
/// duplicate keys…), signed over the canonical form of what a last-wins
/// JSON reader makes of it, so that only the server's strictness refuses
/// it (over `{}` when not even that reader reads it, or it holds a float).
fn signed_raw(raw_msg: &str, kp: &Keypair) -> Vec<u8> {
    let value: Value = parse_strict(raw_msg.as_bytes())
        .ok()
        .or_else(|| serde_json::from_str(raw_msg).ok())
        .filter(|v| canonical_bytes(v).is_ok())
        .unwrap_or_else(|| json!({}));
    let signature = sign_value(value, kp).signature;
    format!(r#"{{"msg":{raw_msg},"signature":"{signature}"}}"#).into_bytes()
}

/// Seals `plaintext` to `to`: base64 of the sealed box.
fn sealed(plaintext: &[u8], to: &PublicKey) -> String {
    B64.encode(seal::seal(plaintext, to).expect("seal"))
}

fn envelope(sealed_b64: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"v": 2, "sealed": sealed_b64})).expect("json")
}

/// A whole request body: `msg` signed by `kp`, sealed to `to`.
fn body(msg: Value, kp: &Keypair, to: &PublicKey) -> Vec<u8> {
    envelope(&sealed(&signed(msg, kp), to))
}

/// A sealed box whose base64 ends in `==` (one byte in the last group),
/// so its last symbol carries four bits that must be zero.
fn padded_sealed(msg: Value, kp: &Keypair, to: &PublicKey) -> String {
    let mut plaintext = signed(msg, kp);
    // 48 bytes of seal overhead; JSON allows trailing whitespace.
    while (plaintext.len() + 48) % 3 != 1 {
        plaintext.push(b' ');
    }
    let text = sealed(&plaintext, to);
    assert!(text.ends_with("==") && !text.ends_with("==="), "{text}");
    text
}

fn start_server(dir: &Path, sbot: &Sbot) -> (Server, Keypair) {
    let secret = std::fs::read_to_string(sbot.secret_path()).expect("sbot secret");
    let pub_key = parse_secret_file(&secret).expect("sbot secret parses");
    let secret = testkit::write_secret(&dir.join("secret"), &pub_key.to_secret_file());
    let (http, dns) = (testkit::free_port(), testkit::free_port());
    let text = ServerConfig::new(DOMAIN)
        .listen(format!("127.0.0.1:{http}"))
        .secret(secret)
        .database(dir.join("registry.sqlite3"))
        // The point: non-global addresses are refused.
        .allow_private_addresses(false)
        .top(&format!(
            "control_socket = {}\nmax_names_per_key = 2",
            testkit::toml_string(dir.join("control.sock").display())
        ))
        .dns_embedded(format!("127.0.0.1:{dns}"))
        .graph(&format!(
            "backend = \"ssb\"\naddr = \"127.0.0.1:{}\"\ncache_seconds = 0",
            sbot.port()
        ))
        .table(&format!(
            "[rate_limit]\nper_key_per_minute = 6\nper_key_burst = {KEY_BURST}\n\
             failures_per_ip_per_minute = {FAILURES_PER_MINUTE}"
        ))
        .to_toml();
    let config = dir.join("server.toml");
    std::fs::write(&config, text).expect("write config");
    let log = dir.join("server.log");
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the server binary starts");
    let server = Server {
        child,
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        dns: SocketAddr::from(([127, 0, 0, 1], dns)),
        log,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(server.http).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not listen: {}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, pub_key)
}

/// A JSON array nested `depth` deep.
fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_their_documented_answers_and_change_nothing() {
    let sbot = Sbot::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (owner, other, stranger, foe, flooder) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    for kp in [&owner, &other, &foe, &flooder] {
        sbot.follow(&kp.id());
    }
    sbot.block(&foe.id());
    let (server, pub_key) = start_server(dir.path(), &sbot);
    let registry = Registry::open(&dir.path().join("registry.sqlite3")).expect("registry");
    let mut s = Suite {
        server,
        registry,
        pub_key: pub_key.clone(),
        keys: [&owner, &other, &stranger, &foe, &flooder]
            .iter()
            .map(|k| k.id())
            .collect(),
        next_seq: BTreeMap::new(),
        source: 0,
        rows: Vec::new(),
    };
    let pk = pub_key.public();
    let set = |name: &str, kp: &Keypair, v4: &str, seq: Option<u64>| Change {
        name: name.into(),
        owner: kp.id(),
        ip: Some(v4.parse().expect("ip")),
        ip6: None,
        seq,
    };

    // ── setup: the owner holds `hostile` with a dyndns2 token, another key `taken`.
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["token_sha256"] = json!(token_hash(TOKEN));
    let mut change = set("hostile", &owner, "24.12.12.12", Some(seq));
    change.ip6 = None;
    s.case(
        "setup",
        "owner registers hostile (with a dyndns2 token)",
        post_request(&body(m, &owner, &pk)),
        expect(200, "ok"),
        Some(change),
        "hostile",
    )
    .await;
    let seq = s.seq(&other);
    s.case(
        "setup",
        "another key registers taken",
        post_request(&body(msg(&other, &pk, "taken", seq), &other, &pk)),
        expect(200, "ok"),
        Some(set("taken", &other, "24.12.12.12", Some(seq))),
        "taken",
    )
    .await;

    // ── the envelope: JSON, version, base64.
    let valid = |s: &mut Suite| {
        let seq = s.seq(&owner);
        msg(&owner, &pk, "hostile", seq)
    };
    let m = valid(&mut s);
    let good_b64 = sealed(&signed(m, &owner), &pk);
    let raw_cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty body", Vec::new(), expect(400, "malformed")),
        ("not JSON", b"hello".to_vec(), expect(400, "malformed")),
        (
            "a JSON string",
            br#""v2""#.to_vec(),
            expect(400, "malformed"),
        ),
        ("{} (no fields)", b"{}".to_vec(), expect(400, "malformed")),
        (
            "truncated JSON",
            envelope(&good_b64)[..40].to_vec(),
            expect(400, "malformed"),
        ),
        (
            "sealed: base64 cut by one symbol",
            envelope(&good_b64[..good_b64.len() - 1]),
            expect(400, "malformed"),
        ),
        (
            "sealed: base64 cut by one group (box too short)",
            envelope(&good_b64[..good_b64.len() - 4]),
            expect(401, "undecryptable"),
        ),
        (
            "sealed: base64url alphabet",
            envelope(&B64URL.encode(B64.decode(&good_b64).expect("b64"))),
            expect(400, "malformed"),
        ),
        (
            "sealed: MIME line breaks every 76",
            envelope(
                &good_b64
                    .as_bytes()
                    .chunks(76)
                    .map(|c| String::from_utf8_lossy(c).to_string())
                    .collect::<Vec<_>>()
                    .join("\r\n"),
            ),
            expect(400, "malformed"),
        ),
        (
            "sealed: surrounded by spaces",
            envelope(&format!(" {good_b64} ")),
            expect(400, "malformed"),
        ),
        ("sealed: empty", envelope(""), expect(401, "undecryptable")),
        (
            "sealed: 64 random bytes",
            envelope(&B64.encode([0x5a; 64])),
            expect(401, "undecryptable"),
        ),
        (
            "sealed: a number",
            br#"{"v":2,"sealed":12}"#.to_vec(),
            expect(400, "malformed"),
        ),
        (
            "v: 1 (v1 is no longer accepted)",
            format!(r#"{{"v":1,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: 3",
            format!(r#"{{"v":3,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: \"2\" (a string)",
            format!(r#"{{"v":"2","sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: 2.0 (a float)",
            format!(r#"{{"v":2.0,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: 2^64 (huge)",
            format!(r#"{{"v":18446744073709551618,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: 1e400",
            format!(r#"{{"v":1e400,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "v: -2",
            format!(r#"{{"v":-2,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "duplicate key v",
            format!(r#"{{"v":2,"v":2,"sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "duplicate key sealed",
            format!(r#"{{"v":2,"sealed":"{good_b64}","sealed":"{good_b64}"}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "unknown field",
            format!(r#"{{"v":2,"sealed":"{good_b64}","x":1}}"#).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "200 nested arrays beside the fields",
            format!(r#"{{"v":2,"sealed":"{good_b64}","x":{}}}"#, nested(200)).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "2000 nested arrays as the body",
            nested(2000).into_bytes(),
            expect(400, "malformed"),
        ),
        (
            "body over 4 KiB",
            format!(
                r#"{{"v":2,"sealed":"{good_b64}","pad":"{}"}}"#,
                "x".repeat(4096)
            )
            .into_bytes(),
            expect(413, "too_large"),
        ),
    ];
    for (what, raw, want) in raw_cases {
        s.case("envelope", what, post_request(&raw), want, None, "hostile")
            .await;
    }
    // Non-canonical base64: the four unused bits of the last symbol set.
    let m = valid(&mut s);
    let padded = padded_sealed(m, &owner, &pk);
    let mut bytes = padded.into_bytes();
    let last = bytes.len() - 3;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let index = alphabet
        .iter()
        .position(|&c| c == bytes[last])
        .expect("b64");
    bytes[last] = alphabet[(index & !0b1111) | 0b0101];
    let non_canonical = String::from_utf8(bytes).expect("ascii");
    s.case(
        "envelope",
        "sealed: non-canonical base64 (unused bits set)",
        post_request(&envelope(&non_canonical)),
        expect(400, "malformed"),
        None,
        "hostile",
    )
    .await;
    let m = valid(&mut s);
    let padded = padded_sealed(m, &owner, &pk);
    s.case(
        "envelope",
        "sealed: padding left out",
        post_request(&envelope(padded.trim_end_matches('='))),
        expect(400, "malformed"),
        None,
        "hostile",
    )
    .await;
    // \u escapes in the envelope are JSON like any other: the same update.
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["ip"] = json!("24.12.12.13");
    let b64 = sealed(&signed(m, &owner), &pk);
    let escaped = b64.replace('/', "\\u002f").replace('+', "\\u002B");
    s.case(
        "escapes",
        "envelope keys and base64 written with \\u escapes (accepted)",
        post_request(format!(r#"{{"\u0076":2,"\u0073ealed":"{escaped}"}}"#).as_bytes()),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.13", Some(seq))),
        "hostile",
    )
    .await;

    s.sweep("envelope").await;

    // ── the seal and the signature.
    let m = valid(&mut s);
    let elsewhere = Keypair::generate();
    s.case(
        "signature",
        "sealed to another pub's key",
        post_request(&body(m, &owner, &elsewhere.public())),
        expect(401, "undecryptable"),
        None,
        "hostile",
    )
    .await;
    let plain_cases: Vec<(&str, Vec<u8>, Expect)> = {
        let m = valid(&mut s);
        let mut other_sig = sign_value(m.clone(), &other);
        other_sig.msg = m.clone();
        let mut tampered = sign_value(m.clone(), &owner);
        tampered.msg["ip"] = json!("24.66.66.66");
        let good = sign_value(m.clone(), &owner);
        let cut_sig = good.signature.replacen(".sig.ed25519", "", 1);
        let cut_sig = format!("{}.sig.ed25519", &cut_sig[..cut_sig.len() - 4]);
        let mut key_no_at = m.clone();
        key_no_at["public_key"] = json!(owner.id().trim_start_matches('@'));
        let mut key_cut = m.clone();
        key_cut["public_key"] = json!(format!("@{}.ed25519", &owner.id()[1..40]));
        vec![
            (
                "plaintext not JSON",
                b"hello".to_vec(),
                expect(400, "malformed"),
            ),
            (
                "plaintext: msg without signature",
                serde_json::to_vec(&json!({"msg": m})).expect("json"),
                expect(400, "malformed"),
            ),
            (
                "signed by another key than public_key",
                other_sig.to_json(),
                expect(401, "bad_signature"),
            ),
            (
                "a field changed after signing",
                tampered.to_json(),
                expect(401, "bad_signature"),
            ),
            (
                "signature: base64 cut by one group",
                serde_json::to_vec(&json!({"msg": m, "signature": cut_sig})).expect("json"),
                expect(400, "malformed"),
            ),
            (
                "signature: without .sig.ed25519",
                serde_json::to_vec(
                    &json!({"msg": m, "signature": good.signature.replace(".sig.ed25519", "")}),
                )
                .expect("json"),
                expect(400, "malformed"),
            ),
            (
                "public_key without @",
                signed(key_no_at, &owner),
                expect(400, "malformed"),
            ),
            (
                "public_key: base64 cut",
                signed(key_cut, &owner),
                expect(400, "malformed"),
            ),
            (
                "duplicate key signature",
                format!(
                    r#"{{"msg":{},"signature":"{}","signature":"{}"}}"#,
                    m, good.signature, good.signature
                )
                .into_bytes(),
                expect(400, "malformed"),
            ),
        ]
    };
    for (what, plaintext, want) in plain_cases {
        s.case(
            "signature",
            what,
            post_request(&envelope(&sealed(&plaintext, &pk))),
            want,
            None,
            "hostile",
        )
        .await;
    }

    s.sweep("signature").await;

    // ── JSON inside the signed message (signed over what the server reads).
    let seq = s.seq(&owner);
    let id = owner.id();
    let pub_id = pk.to_string();
    let base = |name: &str, seq_text: &str, extra: &str| {
        format!(
            r#"{{"op":"update","name":{name},"domain":"{DOMAIN}","pub":"{pub_id}","public_key":"{id}","seq":{seq_text},"ip":"24.12.12.12"{extra}}}"#
        )
    };
    let json_cases: Vec<(&str, String, Expect)> = vec![
        (
            "duplicate key name (taken, then hostile)",
            base(r#""taken","name":"hostile""#, &seq.to_string(), ""),
            expect(400, "malformed"),
        ),
        (
            "duplicate key seq",
            base(r#""hostile""#, &format!("{seq},\"seq\":{}", seq + 1), ""),
            expect(400, "malformed"),
        ),
        (
            "seq: 2^64 + 2 (huge)",
            base(r#""hostile""#, "18446744073709551618", ""),
            expect(400, "malformed"),
        ),
        (
            "seq: 1e3 (a float)",
            base(r#""hostile""#, "1e3", ""),
            expect(400, "malformed"),
        ),
        (
            "seq: -1",
            base(r#""hostile""#, "-1", ""),
            expect(400, "malformed"),
        ),
        (
            "seq: \"123\" (a string)",
            base(r#""hostile""#, "\"123\"", ""),
            expect(400, "malformed"),
        ),
        (
            "seq: 2^64-1 (more than a day ahead)",
            base(r#""hostile""#, &u64::MAX.to_string(), ""),
            expect(422, "invalid_seq"),
        ),
        (
            "seq: 0 (below the last)",
            base(r#""hostile""#, "0", ""),
            expect(409, "stale_seq"),
        ),
        (
            "100 nested arrays in an extra field",
            base(
                r#""hostile""#,
                &seq.to_string(),
                &format!(r#","x":{}"#, nested(100)),
            ),
            expect(400, "malformed"),
        ),
        (
            "1000 nested arrays in an extra field",
            base(
                r#""hostile""#,
                &seq.to_string(),
                &format!(r#","x":{}"#, nested(1000)),
            ),
            expect(400, "malformed"),
        ),
        (
            "unknown field, signed",
            base(r#""hostile""#, &seq.to_string(), r#","admin":true"#),
            expect(400, "malformed"),
        ),
        (
            "ip6: null, signed",
            base(r#""hostile""#, &seq.to_string(), r#","ip6":null"#),
            expect(400, "malformed"),
        ),
        (
            "txt on an update, signed",
            base(r#""hostile""#, &seq.to_string(), r#","txt":["x"]"#),
            expect(400, "malformed"),
        ),
        (
            "name: \\u0000 inside",
            base(r#""host\u0000ile""#, &seq.to_string(), ""),
            expect(422, "invalid_name"),
        ),
        (
            "name: \\u0048ostile (upper case by escape)",
            base(r#""\u0048ostile""#, &seq.to_string(), ""),
            expect(422, "invalid_name"),
        ),
        (
            "name: lone surrogate \\ud800",
            base(r#""host\ud800ile""#, &seq.to_string(), ""),
            expect(400, "malformed"),
        ),
        (
            "name: \\u2024 (one dot leader) inside",
            base(r#""a\u2024hostile""#, &seq.to_string(), ""),
            expect(422, "invalid_name"),
        ),
    ];
    for (what, raw, want) in json_cases {
        let plaintext = signed_raw(&raw, &owner);
        s.case(
            "json",
            what,
            post_request(&envelope(&sealed(&plaintext, &pk))),
            want,
            None,
            "hostile",
        )
        .await;
    }
    // An escaped name is the same name: accepted, as if written plainly.
    let seq = s.seq(&owner);
    let raw =
        base(r#""\u0068ostil\u0065""#, &seq.to_string(), "").replace("24.12.12.12", "24.12.12.14");
    s.case(
        "escapes",
        "name \\u0068ostil\\u0065 (= hostile; accepted)",
        post_request(&envelope(&sealed(&signed_raw(&raw, &owner), &pk))),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.14", Some(seq))),
        "hostile",
    )
    .await;

    s.sweep("json").await;

    // ── names and domains.
    let long63 = format!("h{}", "0".repeat(62));
    let long64 = format!("h{}", "0".repeat(63));
    let name_cases: Vec<(String, Expect)> = [
        ("HOSTILE", expect(422, "invalid_name")),
        ("Hostile", expect(422, "invalid_name")),
        ("hostile.", expect(422, "invalid_name")),
        (".hostile", expect(422, "invalid_name")),
        ("a..b", expect(422, "invalid_name")),
        ("..", expect(422, "invalid_name")),
        ("*", expect(422, "invalid_name")),
        ("*.hostile", expect(422, "invalid_name")),
        ("x.hostile", expect(422, "invalid_name")),
        ("", expect(422, "invalid_name")),
        ("-hostile", expect(422, "invalid_name")),
        ("hostile-", expect(422, "invalid_name")),
        ("_acme-challenge", expect(422, "invalid_name")),
        ("host ile", expect(422, "invalid_name")),
        ("host/ile", expect(422, "invalid_name")),
        ("ns", expect(422, "reserved_name")),
        ("ns1", expect(422, "reserved_name")),
        ("www", expect(422, "reserved_name")),
        ("mail", expect(422, "reserved_name")),
        // Confusables and IDN: only a-z 0-9 - pass the label rule.
        ("hоstile (Cyrillic о)", expect(422, "invalid_name")),
        ("һostile (Cyrillic һ)", expect(422, "invalid_name")),
        ("ｈｏｓｔｉｌｅ (fullwidth)", expect(422, "invalid_name")),
        (
            "hostile\u{200b} (zero width space)",
            expect(422, "invalid_name"),
        ),
        ("hostıle (dotless ı)", expect(422, "invalid_name")),
        ("bücher (IDN, not punycode)", expect(422, "invalid_name")),
        (
            "hostile\u{0301} (combining accent)",
            expect(422, "invalid_name"),
        ),
    ]
    .into_iter()
    .map(|(n, e)| (n.split(" (").next().unwrap_or(n).to_string(), e))
    .chain([(long64.clone(), expect(422, "invalid_name"))])
    .collect();
    let mut rows: Vec<Signed<'_>> = name_cases
        .into_iter()
        .map(|(name, want)| Signed {
            category: "names",
            what: if name.len() > 20 {
                format!(
                    "name: {}… ({} bytes)",
                    name.chars().take(8).collect::<String>(),
                    name.len()
                )
            } else {
                format!("name: {name:?}")
            },
            key: &owner,
            name,
            mutate: Box::new(unchanged),
            want,
            accepted: None,
        })
        .collect();
    for domain in [
        "PEACH.DINOSAUR.IS",
        "peach.dinosaur.is.",
        "dinosaur.is",
        "x.peach.dinosaur.is",
        "peach.dinosaur.is.evil",
        "peach.dinоsaur.is",
        "",
    ] {
        rows.push(Signed {
            category: "names",
            what: format!("domain: {domain:?}"),
            key: &owner,
            name: "hostile".into(),
            mutate: Box::new(move |m| m["domain"] = json!(domain)),
            want: expect(422, "wrong_domain"),
            accepted: None,
        });
    }
    // The longest label, and punycode (a valid LDH label: the rule allows
    // it, as DNS does): both accepted.
    rows.extend([
        Signed {
            category: "names",
            what: "name: 63 characters (the longest; accepted)".into(),
            key: &flooder,
            name: long63.clone(),
            mutate: Box::new(unchanged),
            want: expect(200, "ok"),
            accepted: Some("24.12.12.12"),
        },
        Signed {
            category: "names",
            what: "name: xn--bcher-kva (punycode; accepted as a second name)".into(),
            key: &owner,
            name: "xn--bcher-kva".into(),
            mutate: Box::new(unchanged),
            want: expect(200, "ok"),
            accepted: Some("24.12.12.12"),
        },
        Signed {
            category: "names",
            what: "a third name (max_names_per_key = 2)".into(),
            key: &owner,
            name: "third".into(),
            mutate: Box::new(unchanged),
            want: expect(422, "too_many_names"),
            accepted: None,
        },
    ]);
    for row in rows {
        s.signed(row).await;
    }

    s.sweep("names").await;

    // ── addresses: every class that is not globally routable.
    let v4_bad = [
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "169.254.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.1",
        "192.0.0.170",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ];
    let bad_ip = |what: String, field: &'static str, value: Value, want: Expect| Signed {
        category: "addresses",
        what,
        key: &owner,
        name: "hostile".into(),
        mutate: Box::new(move |m| m[field] = value.clone()),
        want,
        accepted: None,
    };
    let mut rows: Vec<Signed<'_>> = v4_bad
        .iter()
        .map(|addr| {
            bad_ip(
                format!("ip {addr}"),
                "ip",
                json!(addr),
                expect(422, "invalid_ip"),
            )
        })
        .collect();
    let v6_bad = [
        "::",
        "::1",
        "::ffff:10.0.0.1",
        "::ffff:24.12.12.12",
        "::10.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::1818:1818",
        "64:ff9b:1::1",
        "100::1",
        "2001::1",
        "2001:db8::1",
        "2002:a00:1::1",
        "2002:c0a8:101::1",
        "2002:7f00:1::1",
        "2002:6440:1::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "ff0e::1",
        "4000::1",
    ];
    rows.extend(v6_bad.iter().map(|addr| {
        bad_ip(
            format!("ip 24.12.12.12 and ip6 {addr}"),
            "ip6",
            json!(addr),
            expect(422, "invalid_ip"),
        )
    }));
    let text_cases: [(&str, Value); 9] = [
        ("ip", json!("010.1.2.3")),
        ("ip", json!("24.12.12")),
        ("ip", json!("24.12.12.12/32")),
        ("ip", json!(" 24.12.12.12")),
        ("ip", json!("0x18.12.12.12")),
        ("ip", json!(404_491_276)),
        ("ip", json!("2a01:4f8::1")),
        ("ip6", json!("24.12.12.12")),
        ("ip6", json!("2a01:4f8::1%eth0")),
    ];
    rows.extend(text_cases.into_iter().map(|(field, value)| {
        bad_ip(
            format!("{field} {value} (not an address's text)"),
            field,
            value,
            expect(400, "malformed"),
        )
    }));
    for row in rows {
        s.signed(row).await;
    }

    s.sweep("addresses").await;

    // ── replays and order.
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["ip"] = json!("24.12.12.20");
    let captured = body(m, &owner, &pk);
    s.case(
        "replay",
        "an update (then replayed)",
        post_request(&captured),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.20", Some(seq))),
        "hostile",
    )
    .await;
    s.case(
        "replay",
        "the same body again (replay)",
        post_request(&captured),
        expect(409, "stale_seq"),
        None,
        "hostile",
    )
    .await;
    let (first, second) = (s.seq(&owner), s.seq(&owner));
    let mut early = msg(&owner, &pk, "hostile", first);
    early["ip"] = json!("24.12.12.21");
    let mut late = msg(&owner, &pk, "hostile", second);
    late["ip"] = json!("24.12.12.22");
    let (early, late) = (body(early, &owner, &pk), body(late, &owner, &pk));
    s.case(
        "replay",
        "two envelopes reordered: the later seq first",
        post_request(&late),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.22", Some(second))),
        "hostile",
    )
    .await;
    s.case(
        "replay",
        "two envelopes reordered: then the earlier seq",
        post_request(&early),
        expect(409, "stale_seq"),
        None,
        "hostile",
    )
    .await;
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["ip"] = json!("24.12.12.23");
    s.case(
        "replay",
        "one seq on two names: the first",
        post_request(&body(m, &owner, &pk)),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.23", Some(seq))),
        "hostile",
    )
    .await;
    let mut m = msg(&owner, &pk, "xn--bcher-kva", seq);
    m["ip"] = json!("24.12.12.23");
    s.case(
        "replay",
        "one seq on two names: the second",
        post_request(&body(m, &owner, &pk)),
        expect(409, "stale_seq"),
        None,
        "xn--bcher-kva",
    )
    .await;
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq + 2 * 86_400_000);
    m["ip"] = json!("24.12.12.24");
    s.case(
        "replay",
        "seq two days ahead",
        post_request(&body(m, &owner, &pk)),
        expect(422, "invalid_seq"),
        None,
        "hostile",
    )
    .await;
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["pub"] = json!(elsewhere.id());
    s.case(
        "replay",
        "a message for another pub, sealed to this one",
        post_request(&body(m, &owner, &pk)),
        expect(422, "wrong_pub"),
        None,
        "hostile",
    )
    .await;

    s.sweep("replay").await;

    // ── the graph and ownership.
    let rows = [
        Signed {
            category: "graph",
            what: "a key the pub does not follow".into(),
            key: &stranger,
            name: "stranger".into(),
            mutate: Box::new(unchanged),
            want: expect(403, "not_followed"),
            accepted: None,
        },
        Signed {
            category: "graph",
            what: "a key the pub blocks".into(),
            key: &foe,
            name: "foe".into(),
            mutate: Box::new(unchanged),
            want: expect(403, "blocked"),
            accepted: None,
        },
        Signed {
            category: "graph",
            what: "update of a name another key holds".into(),
            key: &owner,
            name: "taken".into(),
            mutate: Box::new(unchanged),
            want: expect(409, "name_taken"),
            accepted: None,
        },
        Signed {
            category: "graph",
            what: "release of a name another key holds".into(),
            key: &owner,
            name: "taken".into(),
            mutate: Box::new(|m| {
                m["op"] = json!("release");
                m.as_object_mut().expect("an object").remove("ip");
            }),
            want: expect(409, "name_taken"),
            accepted: None,
        },
        Signed {
            category: "graph",
            what: "acme_set on a name another key holds".into(),
            key: &owner,
            name: "taken".into(),
            mutate: Box::new(|m| {
                m["op"] = json!("acme_set");
                m["txt"] = json!(["LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"]);
                m.as_object_mut().expect("an object").remove("ip");
            }),
            want: expect(422, "not_registered"),
            accepted: None,
        },
    ];
    for row in rows {
        s.signed(row).await;
    }

    s.sweep("graph").await;

    // ── dyndns2 garbage.
    let fqdn = format!("hostile.{DOMAIN}");
    let right = basic(&fqdn, TOKEN);
    let nic = |query: &str| format!("/nic/update?{query}");
    let d2: Vec<(String, String, Option<String>, Expect)> = vec![
        (
            "no Authorization".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            None,
            expect(401, "badauth"),
        ),
        (
            "Authorization: Basic !!!".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            Some("Basic !!!".into()),
            expect(401, "badauth"),
        ),
        (
            "Basic without a colon".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            Some(format!("Basic {}", B64.encode(&fqdn))),
            expect(401, "badauth"),
        ),
        (
            "Basic of bytes that are not UTF-8".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            Some(format!("Basic {}", B64.encode([0xff, 0xfe, b':', 0xff]))),
            expect(401, "badauth"),
        ),
        (
            "Bearer token".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            Some(format!("Bearer {TOKEN}")),
            expect(401, "badauth"),
        ),
        (
            "wrong token".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1")),
            Some(basic(&fqdn, "guess")),
            expect(401, "badauth"),
        ),
        (
            "the token, for a name another key holds".into(),
            nic(&format!("hostname=taken.{DOMAIN}&myip=24.1.1.1")),
            Some(basic(&fqdn, TOKEN)),
            expect(401, "badauth"),
        ),
        (
            "hostname outside the zone".into(),
            nic("hostname=hostile.evil.is&myip=24.1.1.1"),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: the zone itself".into(),
            nic(&format!("hostname={DOMAIN}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: a..zone".into(),
            nic(&format!("hostname=a..{DOMAIN}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: *.zone".into(),
            nic(&format!("hostname=*.{DOMAIN}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: x.hostile.zone".into(),
            nic(&format!("hostname=x.{fqdn}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: a 64-character label".into(),
            nic(&format!("hostname={long64}.{DOMAIN}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: %ZZ (bad percent escape)".into(),
            nic("hostname=%ZZ&myip=24.1.1.1"),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: percent-encoded Cyrillic о".into(),
            nic(&format!("hostname=h%D0%BEstile.{DOMAIN}&myip=24.1.1.1")),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname: 3000 characters".into(),
            nic(&format!(
                "hostname={}.{DOMAIN}&myip=24.1.1.1",
                "a".repeat(3000)
            )),
            Some(right.clone()),
            expect(200, "notfqdn"),
        ),
        (
            "hostname nobody holds".into(),
            nic(&format!("hostname=nobody.{DOMAIN}&myip=24.1.1.1")),
            Some(basic(&format!("nobody.{DOMAIN}"), TOKEN)),
            expect(200, "nohost"),
        ),
        (
            "myip=junk".into(),
            nic(&format!("hostname={fqdn}&myip=junk")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=10.0.0.1 (private)".into(),
            nic(&format!("hostname={fqdn}&myip=10.0.0.1")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=100.64.0.1 (CGNAT)".into(),
            nic(&format!("hostname={fqdn}&myip=100.64.0.1")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=2002:a00:1:: (6to4 around 10.0.0.1)".into(),
            nic(&format!("hostname={fqdn}&myip=2002:a00:1::")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=::ffff:24.1.1.1 (IPv4-mapped)".into(),
            nic(&format!("hostname={fqdn}&myip=::ffff:24.1.1.1")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=24.1.1.1,24.2.2.2 (two IPv4)".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1,24.2.2.2")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "myip=24.1.1.1,, (empty items)".into(),
            nic(&format!("hostname={fqdn}&myip=24.1.1.1,,")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
        (
            "no myip: the caller's loopback address".into(),
            nic(&format!("hostname={fqdn}")),
            Some(right.clone()),
            expect(200, "dnserr"),
        ),
    ];
    for (what, target, auth, want) in d2 {
        s.case(
            "dyndns2",
            what,
            get_request(&target, auth.as_deref()),
            want,
            None,
            "hostile",
        )
        .await;
    }
    // Upper case and a trailing dot are the same name: accepted.
    let mut change = set("hostile", &owner, "24.12.12.30", None);
    change.seq = None;
    s.case(
        "dyndns2",
        "HOSTILE.PEACH.DINOSAUR.IS. with the token (accepted)",
        get_request(
            &nic("hostname=HOSTILE.PEACH.DINOSAUR.IS.&myip=24.12.12.30"),
            Some(&right),
        ),
        expect(200, "good"),
        Some(change),
        "hostile",
    )
    .await;

    s.sweep("dyndns2").await;

    // ── floods: one source past its budget, one key past its rate.
    flood(
        &mut s,
        "garbage (not JSON)",
        |_| post_request(b"not json"),
        (400, "malformed"),
    )
    .await;
    let strangers: Vec<Keypair> = (0..FAILURES_PER_MINUTE + 10)
        .map(|_| Keypair::generate())
        .collect();
    let pk2 = pk;
    flood(
        &mut s,
        "updates signed by fresh unfollowed keys",
        move |i| {
            let kp = &strangers[i];
            post_request(&body(msg(kp, &pk2, "stranger", now_ms()), kp, &pk2))
        },
        (403, "not_followed"),
    )
    .await;
    flood(
        &mut s,
        "dyndns2 with a wrong token",
        |_| {
            get_request(
                &format!("/nic/update?hostname={fqdn}&myip=24.1.1.1"),
                Some(&basic(&fqdn, "guess")),
            )
        },
        (401, "badauth"),
    )
    .await;
    key_flood(&mut s, &flooder, &long63).await;
    // After the floods, others are served at once.
    let seq = s.seq(&owner);
    let mut m = msg(&owner, &pk, "hostile", seq);
    m["ip"] = json!("24.12.12.40");
    s.case(
        "floods",
        "the owner, from another address, after the floods",
        post_request(&body(m, &owner, &pk)),
        expect(200, "ok"),
        Some(set("hostile", &owner, "24.12.12.40", Some(seq))),
        "hostile",
    )
    .await;

    s.sweep("floods").await;

    let table = s.table();
    println!("{table}");
    let failures: Vec<String> = s
        .rows
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|f| format!("[{}] {}: {f}", r.category, r.sent))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n\n{table}\nserver log:\n{}",
        failures.len(),
        s.rows.len(),
        failures.join("\n"),
        s.server.log_tail()
    );
}

/// Sends `FAILURES_PER_MINUTE + 10` refused requests from one new source:
/// each gets `refusal` until the source's budget is spent, then 429
/// (`rate_limited`, or dyndns2's `abuse`) with `Retry-After`, and nothing
/// changes.
async fn flood(
    s: &mut Suite,
    what: &str,
    request: impl Fn(usize) -> Vec<u8>,
    refusal: (u16, &'static str),
) {
    let source = s.source();
    let before = s.snapshot();
    let count = usize::try_from(FAILURES_PER_MINUTE + 10).expect("small");
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut order_ok = true;
    let mut limited = false;
    let mut retry_after = true;
    let started = Instant::now();
    for i in 0..count {
        let reply = http(s.server.http, source, &request(i)).await;
        let summary = reply.summary();
        if reply.status == 429 {
            limited = true;
            retry_after &= reply.header("retry-after").is_some();
        } else if limited || summary != format!("{} {}", refusal.0, refusal.1) {
            order_ok = false;
        }
        *answers.entry(summary).or_default() += 1;
    }
    let elapsed = started.elapsed();
    let refused = answers
        .get(&format!("{} {}", refusal.0, refusal.1))
        .copied()
        .unwrap_or(0);
    let budget = usize::try_from(FAILURES_PER_MINUTE).expect("small");
    // A refill of one per 3 s may add one or two within the flood.
    let ok = order_ok
        && limited
        && retry_after
        && (budget..=budget + 2).contains(&refused)
        && s.snapshot() == before;
    let got = answers
        .iter()
        .map(|(a, n)| format!("{n}×{a}"))
        .collect::<Vec<_>>()
        .join(", ");
    let why = format!(
        "in order: {order_ok}, limited: {limited}, Retry-After on every 429: {retry_after}, \
         {refused} refused before the limit, registry unchanged: {}",
        s.snapshot() == before
    );
    s.row(
        "floods",
        format!("{count} × {what} from one address ({elapsed:.1?})"),
        format!("{budget}×{} {}, then 429", refusal.0, refusal.1),
        got,
        ok.then_some(()).ok_or(why),
    );
}

/// One followed key sends valid updates faster than its rate: the first
/// `KEY_BURST` (or a few more, refilled on the way) are accepted, the rest
/// get 429 `rate_limited`; the registry and DNS hold the last accepted.
async fn key_flood(s: &mut Suite, kp: &Keypair, name: &str) {
    let pk = s.pub_key.public();
    let count = KEY_BURST + 10;
    let mut accepted = 0u32;
    let mut limited = 0u32;
    let mut other = Vec::new();
    let mut last_ok = None;
    let started = Instant::now();
    for i in 0..count {
        let seq = s.seq(kp);
        let addr = Ipv4Addr::new(24, 50, 0, u8::try_from(i % 250).expect("small") + 1);
        let mut m = msg(kp, &pk, name, seq);
        m["ip"] = json!(addr.to_string());
        let source = s.source();
        let reply = http(s.server.http, source, &post_request(&body(m, kp, &pk))).await;
        match reply.status {
            200 => {
                accepted += 1;
                last_ok = Some((addr, seq));
            }
            429 if reply.summary() == "429 rate_limited" => limited += 1,
            _ => other.push(reply.summary()),
        }
    }
    let elapsed = started.elapsed();
    let snapshot = s.snapshot();
    let entry = snapshot.names.get(name);
    let held = entry.and_then(|e| e.ip);
    let dns = s.dns(name).await;
    let (want_ip, want_seq) = last_ok.map_or((None, None), |(a, q)| (Some(a), Some(q)));
    let ok = other.is_empty()
        // The key spent one token registering its name in the names
        // category; it comes back within 10 s (6 a minute), or not yet.
        && (KEY_BURST - 1..=KEY_BURST + 2).contains(&accepted)
        && limited + accepted == count
        && held == want_ip
        && snapshot.seqs.get(&kp.id()).copied().flatten() == want_seq
        && dns == want_ip.map(|a| vec![a.to_string()]).unwrap_or_default();
    let got = format!("{accepted}×200, {limited}×429, others {other:?}; DNS {dns:?}");
    s.row(
        "floods",
        format!("{count} valid updates by one key, each from its own address ({elapsed:.1?})"),
        format!("{KEY_BURST}×200 ok, then 429 rate_limited"),
        got.clone(),
        ok.then_some(()).ok_or(format!(
            "{got}; the registry holds {held:?}, the last accepted was {want_ip:?}"
        )),
    );
}

/// dyndns2's 429 (the source's budget spent) says when to come back, as
/// the update API's does: it used to carry no `Retry-After` (found by the
/// flood above).
#[tokio::test]
async fn a_dyndns2_429_carries_retry_after() {
    let pi = Keypair::generate();
    let p = crate::common::pub_with(
        std::sync::Arc::new(peach_dyndns_server::graph::Allowlist::new([pi.public()])),
        "",
        "[rate_limit]\nfailures_per_ip_per_minute = 1",
    );
    let peer: SocketAddr = "24.12.12.12:40000".parse().expect("addr");
    p.state.charge_failure(peer.ip());
    let resp = warp::test::request()
        .method("GET")
        .path(&format!(
            "/nic/update?hostname=hostile.{DOMAIN}&myip=24.1.1.1"
        ))
        .header("authorization", basic(&format!("hostile.{DOMAIN}"), TOKEN))
        .remote_addr(peer)
        .reply(&peach_dyndns_server::api::routes(p.state.clone()))
        .await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(String::from_utf8_lossy(resp.body()).trim(), "abuse");
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
}
