//! Load held against the real binary (issue 10): hosts holding more idle,
//! slow-head and slow-body sockets than the server's connection cap do
//! not keep a normal client's signed update out; a DNS flood from one
//! source does not keep another source's queries unanswered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use peach_dyndns_protocol::identity::Keypair;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::real::*;

/// The connection cap the test configures, low so that a test can pass it.
const MAX_CONNECTIONS: usize = 64;
/// The per-source share the test configures.
const PER_SOURCE: usize = 16;
/// Updates the normal client sends at each level of held sockets.
const UPDATES_PER_LEVEL: usize = 6;
/// The trusted proxy: its clients all come from its address, so it is not
/// held to the per-source share.
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// How a held socket misbehaves.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Connects and sends nothing.
    Idle,
    /// Sends the start of a request head, then nothing (slowloris).
    SlowHead,
    /// Sends a whole head announcing 400 bytes of body, and 7 of them.
    SlowBody,
}

/// Opens a socket from `source` and misbehaves in the way `hold` says.
async fn hold(source: IpAddr, to: SocketAddr, hold: Hold) -> Option<TcpStream> {
    let mut s = connect_from(source, to).await.ok()?;
    let bytes: &[u8] = match hold {
        Hold::Idle => b"",
        Hold::SlowHead => b"POST /update HTTP/1.1\r\nHost: pub\r\n",
        Hold::SlowBody => {
            b"POST /update HTTP/1.1\r\nHost: pub\r\nContent-Type: application/json\r\n\
              Content-Length: 400\r\n\r\n{\"v\":2,"
        }
    };
    // The server may have closed it at once (the source is at its
    // share); the socket is still counted as tried.
    let _ = s.write_all(bytes).await;
    Some(s)
}

/// How many of `held` are still open from the client's side: a read that
/// would block means open (held by the server, or waiting in its backlog),
/// EOF or a reset means closed.
async fn still_open(held: &mut [TcpStream]) -> usize {
    let mut open = 0;
    for s in held.iter_mut() {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(2), s.read(&mut buf)).await {
            Err(_) => open += 1,
            Ok(Ok(n)) if n > 0 => open += 1,
            Ok(_) => {}
        }
    }
    open
}

/// One row of the table.
struct Level {
    tried: usize,
    open: usize,
    kept: usize,
    p50: Duration,
    max: Duration,
    ok: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_past_the_cap_leave_room_for_a_normal_update() {
    let mut normal = Client::new("eb4890", IpAddr::from([127, 0, 5, 1]));
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &format!(
                "backend = \"allowlist\"\nallow = [\"{}\"]",
                normal.keypair.id()
            ),
            top: &format!("trusted_proxies = [\"{PROXY}\"]"),
            // Deadlines far longer than the test, so what is held stays
            // held while the normal client is measured.
            tables: &format!(
                "[http]\nheader_timeout_secs = 60\nbody_timeout_secs = 60\n\
                 max_connections = {MAX_CONNECTIONS}\n\
                 max_connections_per_source = {PER_SOURCE}\n\
                 [rate_limit]\nper_key_per_minute = 600\nper_key_burst = 100"
            ),
        },
    );
    // Levels of sockets held: (attacker sockets, from this many sources,
    // sockets from the trusted proxy).
    let levels = [
        (0, 1, 0),
        (48, 3, 0),
        (100, 10, 0),
        (200, 10, 0),
        (200, 10, 40),
    ];
    let mut held: Vec<TcpStream> = Vec::new();
    let mut rows = Vec::new();
    let mut last_ip = None;
    let mut opened = (0, 0);
    // The sockets the server holds with no client: listeners and the like.
    let baseline = server.sockets();
    for (round, &(attack, sources, proxied)) in levels.iter().enumerate() {
        // Open what this level adds to the last one.
        for i in opened.0..attack {
            let source = IpAddr::from([127, 0, 0, 2 + (i % sources) as u8]);
            let kind = [Hold::Idle, Hold::SlowHead, Hold::SlowBody][i % 3];
            if let Some(s) = hold(source, server.http, kind).await {
                held.push(s);
            }
        }
        for i in opened.1..proxied {
            let kind = [Hold::Idle, Hold::SlowHead, Hold::SlowBody][i % 3];
            if let Some(s) = hold(IpAddr::V4(PROXY), server.http, kind).await {
                held.push(s);
            }
        }
        opened = (attack, proxied);
        // Let the server take them in (or close them).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut took = Vec::new();
        let mut ok = 0;
        for u in 0..UPDATES_PER_LEVEL {
            let ip = Ipv4Addr::new(24, 1, round as u8, u as u8 + 1);
            let started = Instant::now();
            let reply = normal.update(&server, Some(ip), None).await;
            took.push(started.elapsed());
            match reply {
                Ok(r) if r.status == 200 => {
                    ok += 1;
                    last_ip = Some(ip);
                }
                other => eprintln!("level {round} update {u}: {other:?}"),
            }
        }
        let kept = server.sockets().saturating_sub(baseline);
        let open = still_open(&mut held).await;
        took.sort();
        rows.push(Level {
            tried: attack + proxied,
            open,
            kept,
            p50: percentile(&took, 50),
            max: *took.last().expect("updates were sent"),
            ok,
        });
    }
    println!("load held: sockets held vs. the normal client's signed update");
    println!(
        "(cap {MAX_CONNECTIONS}, per source {PER_SOURCE}; idle, slow-head and slow-body sockets \
         from 127.0.0.2.., and from the trusted proxy {PROXY}; {UPDATES_PER_LEVEL} updates a row)"
    );
    println!(
        "{:>14} {:>18} {:>12} {:>8} {:>10} {:>10}",
        "sockets tried", "open (or backlog)", "server kept", "200s", "p50", "max"
    );
    for r in &rows {
        println!(
            "{:>14} {:>18} {:>12} {:>8} {:>8.1}ms {:>8.1}ms",
            r.tried,
            r.open,
            r.kept,
            format!("{}/{UPDATES_PER_LEVEL}", r.ok),
            r.p50.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3
        );
    }
    for r in &rows {
        assert_eq!(r.ok, UPDATES_PER_LEVEL, "every update was accepted");
        assert!(r.max < Duration::from_secs(1), "within 1 s: {:?}", r.max);
        assert!(
            r.kept <= MAX_CONNECTIONS,
            "the server never kept more than its cap ({} > {MAX_CONNECTIONS})",
            r.kept
        );
    }
    // The last rows held more than the cap allows: the server was full.
    // Each of the normal client's updates may have evicted one held socket
    // (at the cap a newcomer ends the heaviest source's oldest), and its
    // own closes after the answer: so up to UPDATES_PER_LEVEL fewer.
    assert!(
        rows[3].tried > MAX_CONNECTIONS && rows[3].kept >= MAX_CONNECTIONS - UPDATES_PER_LEVEL,
        "the server was full: {} kept of {} tried",
        rows[3].kept,
        rows[3].tried
    );
    // And closed what did not fit rather than leaving it in the backlog.
    assert!(rows[3].open <= MAX_CONNECTIONS, "{}", rows[3].open);
    // The accepted address is what DNS answers.
    let dns = server.dns.expect("embedded DNS");
    let fqdn = normal.fqdn();
    let a = tokio::task::spawn_blocking(move || dig_tcp(dns, &fqdn, "A"))
        .await
        .expect("dig");
    assert_eq!(a, [last_ip.expect("an update was accepted").to_string()]);
    drop(held);
}

/// A query for `name` A with this id, as bytes.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    msg.to_vec().expect("query bytes")
}

/// What came back to a flood.
#[derive(Debug, Default)]
struct FloodCounts {
    sent: usize,
    answered: usize,
    slipped: usize,
    largest_slip: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_flood_from_one_source_leaves_another_answered() {
    let mut pi = Client::new("eb4890", IpAddr::from([127, 0, 5, 1]));
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &format!("backend = \"allowlist\"\nallow = [\"{}\"]", pi.keypair.id()),
            top: "",
            tables: "",
        },
    );
    let reply = pi
        .update(&server, Some(Ipv4Addr::new(24, 8, 8, 8)), None)
        .await
        .expect("update");
    assert_eq!(reply.status, 200, "{:?}", reply);
    let dns = server.dns.expect("embedded DNS");
    let fqdn = pi.fqdn();
    // The flood: 127.0.0.2 (prefix 127.0.0.0/24) sends 2,000 queries a
    // second for 2 s and counts what comes back.
    const FLOOD_QPS: u64 = 2_000;
    const FLOOD_FOR: Duration = Duration::from_secs(2);
    let flood_q = query(0, &fqdn);
    let flooder = UdpSocket::bind("127.0.0.2:0").await.expect("bind flooder");
    flooder.connect(dns).await.expect("connect");
    let flooder = std::sync::Arc::new(flooder);
    let receiver = {
        let flooder = flooder.clone();
        let query_len = flood_q.len();
        tokio::spawn(async move {
            let mut counts = FloodCounts::default();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), flooder.recv(&mut buf)).await
            {
                let msg = Message::from_vec(&buf[..n]).expect("a DNS answer");
                if msg.metadata.truncation && msg.answers.is_empty() {
                    counts.slipped += 1;
                    counts.largest_slip = counts.largest_slip.max(n);
                    assert!(
                        n <= query_len,
                        "a slipped answer ({n} B) is no larger than the query ({query_len} B)"
                    );
                } else {
                    assert_eq!(msg.answers.len(), 1);
                    counts.answered += 1;
                }
            }
            counts
        })
    };
    // The other source, 127.0.1.1 (another /24), asks ten times meanwhile.
    let other = tokio::spawn({
        let fqdn = fqdn.clone();
        async move {
            let socket = UdpSocket::bind("127.0.1.1:0").await.expect("bind");
            socket.connect(dns).await.expect("connect");
            let (mut first_try, mut answered) = (0, 0);
            for id in 1..=10u16 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                for attempt in 0..2 {
                    socket.send(&query(id, &fqdn)).await.expect("send");
                    let mut buf = [0u8; 4096];
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf))
                            .await
                    {
                        let msg = Message::from_vec(&buf[..n]).expect("answer");
                        if msg.metadata.id == id
                            && !msg.metadata.truncation
                            && msg.answers.len() == 1
                        {
                            answered += 1;
                            first_try += usize::from(attempt == 0);
                            break;
                        }
                    }
                }
            }
            (first_try, answered)
        }
    });
    let started = Instant::now();
    let mut sent = 0usize;
    let mut id = 1u16;
    while started.elapsed() < FLOOD_FOR {
        // Sends in steps of 10 ms to hold the rate.
        let due = (started.elapsed().as_millis() as u64 * FLOOD_QPS / 1000) as usize;
        while sent < due {
            let mut q = flood_q.clone();
            q[..2].copy_from_slice(&id.to_be_bytes());
            id = id.wrapping_add(1);
            if flooder.send(&q).await.is_ok() {
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let mut counts = receiver.await.expect("receiver");
    counts.sent = sent;
    let (first_try, answered) = other.await.expect("other source");
    // A real client behind the flooded prefix: the slip sent it TC, and
    // over TCP it is answered in full.
    let tcp = tokio::task::spawn_blocking({
        let fqdn = fqdn.clone();
        move || {
            testkit::dig(dns, &fqdn, "A")
                .tcp(true)
                .flags(&["-b", "127.0.0.2"])
                .short()
        }
    })
    .await
    .expect("dig");
    let dropped = counts.sent - counts.answered - counts.slipped;
    println!(
        "DNS flood from 127.0.0.2 ({FLOOD_QPS} qps for {flood_secs:.1} s) against the embedded DNS"
    );
    println!("{:>30} {:>8}", "flood queries sent", counts.sent);
    println!("{:>30} {:>8}", "answered in full", counts.answered);
    println!(
        "{:>30} {:>8}  (largest {} B, the query is {} B)",
        "slipped (TC, empty)",
        counts.slipped,
        counts.largest_slip,
        flood_q.len()
    );
    println!("{:>30} {:>8}", "dropped", dropped);
    println!(
        "{:>30} {:>5}/10 ({first_try} at the first try)",
        "other source (127.0.1.1) answered", answered
    );
    println!("{:>30} {:?}", "flooded source over TCP", tcp);
    // RRL: 20 answers a second to one /24 after a burst of 20.
    let allowed = 20.0 + 20.0 * flood_secs + 5.0;
    assert!(
        (counts.answered as f64) <= allowed,
        "at most the burst and the rate were answered: {counts:?}"
    );
    assert!(counts.answered >= 20, "the burst was answered: {counts:?}");
    // Slip 2: about every second dropped answer goes out truncated.
    let over = counts.sent - counts.answered;
    assert!(
        counts.slipped * 10 >= over * 4 && counts.slipped * 10 <= over * 6,
        "about half of the answers over the limit slipped: {counts:?}"
    );
    assert_eq!(answered, 10, "the other source was answered every time");
    assert_eq!(tcp, ["24.8.8.8"]);
}

/// One A query for `fqdn` over the TCP stream `s`; `None` when the server
/// closed it instead of answering.
async fn tcp_ask(s: &mut TcpStream, id: u16, fqdn: &str) -> Option<Message> {
    let q = query(id, fqdn);
    let mut framed = u16::try_from(q.len()).expect("len").to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.ok()?;
    let len = tokio::time::timeout(Duration::from_secs(2), s.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.ok()?;
    Message::from_vec(&buf).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_limits_of_the_config_are_the_ones_served() {
    let mut pi = Client::new("eb4890", IpAddr::from([127, 0, 5, 1]));
    // Lower than every default (rate 20, slip 2, 8 TCP connections a
    // source), so the defaults would fail each assertion below.
    let server = RealServer::start(
        Keypair::generate(),
        Setup {
            dns: None,
            graph: &format!("backend = \"allowlist\"\nallow = [\"{}\"]", pi.keypair.id()),
            top: "",
            tables: "[dns.limits]\nrrl_per_second = 4\nrrl_slip = 1\nmax_tcp_per_source = 3",
        },
    );
    let reply = pi
        .update(&server, Some(Ipv4Addr::new(24, 8, 8, 8)), None)
        .await
        .expect("update");
    assert_eq!(reply.status, 200, "{:?}", reply);
    let dns = server.dns.expect("embedded DNS");
    let fqdn = pi.fqdn();
    // UDP: 40 queries at once from one source; the burst of 4 (and what
    // refills meanwhile) is answered in full, and with slip 1 every other
    // answer comes back empty with TC.
    let socket = UdpSocket::bind("127.0.6.1:0").await.expect("bind");
    socket.connect(dns).await.expect("connect");
    const SENT: u16 = 40;
    for id in 0..SENT {
        socket.send(&query(id, &fqdn)).await.expect("send");
    }
    let (mut full, mut slipped) = (0usize, 0usize);
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        let msg = Message::from_vec(&buf[..n]).expect("a DNS answer");
        if msg.metadata.truncation && msg.answers.is_empty() {
            slipped += 1;
        } else {
            full += 1;
        }
    }
    // TCP: three connections from one source are served, a fourth is
    // closed without an answer, another source is still served.
    let source = IpAddr::from([127, 0, 6, 2]);
    let mut held = Vec::new();
    for id in 0..3 {
        let mut s = connect_from(source, dns).await.expect("connect");
        let answer = tcp_ask(&mut s, id, &fqdn).await;
        assert!(
            answer.is_some_and(|a| a.answers.len() == 1),
            "connection {id} served"
        );
        held.push(s);
    }
    let mut fourth = connect_from(source, dns).await.expect("connect");
    let fourth_answered = tcp_ask(&mut fourth, 3, &fqdn).await.is_some();
    let mut other = connect_from(IpAddr::from([127, 0, 6, 3]), dns)
        .await
        .expect("connect");
    let other_answered = tcp_ask(&mut other, 4, &fqdn).await.is_some();
    println!("[dns.limits] rrl_per_second = 4, rrl_slip = 1, max_tcp_per_source = 3");
    println!("{:>34} {:>4}", "UDP queries sent at once", SENT);
    println!("{:>34} {:>4}", "answered in full", full);
    println!("{:>34} {:>4}", "slipped (TC, empty)", slipped);
    println!("{:>34} {:>4}", "TCP connections served", held.len());
    println!("{:>34} {:>4}", "4th connection answered", fourth_answered);
    println!("{:>34} {:>4}", "other source answered", other_answered);
    assert!(
        (4..=6).contains(&full),
        "the burst of 4 answered in full: {full}"
    );
    assert_eq!(
        slipped,
        usize::from(SENT) - full,
        "slip 1: every dropped answer is sent truncated"
    );
    assert!(
        !fourth_answered,
        "the 4th connection of one source is closed"
    );
    assert!(other_answered, "another source is served");
}
