//! The `--client` child: builds every request before timing, opens the
//! keep-alive connections, says `ready`, waits for `go` on standard input,
//! drives `POST /update` and prints its [`ClientResult`].
//!
//! It runs in its own process so that the server's CPU time (read from
//! `/proc` by the parent) holds no client work, and on one thread, so it
//! takes at most one of the machine's cores from the server.
//!
//! HTTP/1.1 is written by hand: the requests are fixed bytes, and an answer
//! is a status line, headers with `Content-Length` (warp sets it on every
//! JSON answer) and a short body. Nothing is pipelined: one request in
//! flight per connection.

use std::io::{BufRead as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::seal;
use testkit::procfs;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::spec::{
    bench_key, bench_name, change_ip, home_ip, ClientResult, ClientSpec, RunKind, RESULT_PREFIX,
};

/// How long one request may take before the connection is given up (and
/// the request counted as an error). Far above any target, so it only ends
/// a run that is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer head we accept (warp's are about 100 bytes).
const MAX_HEAD: usize = 16 * 1024;
/// Errors kept word for word in the report.
const ERROR_SAMPLES: usize = 5;

/// Entry point of the `--client` role.
pub fn main(spec: &ClientSpec) -> anyhow::Result<()> {
    let build_started = Instant::now();
    let per_conn = build_requests(spec)?;
    let built: u64 = per_conn.iter().map(|reqs| reqs.len() as u64).sum();
    let build_s = build_started.elapsed().as_secs_f64();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    let streams = runtime.block_on(connect_all(spec))?;

    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {built}")?;
    stdout.flush()?;
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .context("waiting for go")?;
    anyhow::ensure!(go.trim() == "go", "expected `go`, got {go:?}");

    let cpu_before = procfs::cpu_seconds(None)?;
    let mut result = runtime.block_on(drive(spec, streams, per_conn));
    result.cpu_s = procfs::cpu_seconds(None)? - cpu_before;
    result.built = built;
    result.build_s = build_s;
    writeln!(
        stdout,
        "{RESULT_PREFIX}{}",
        serde_json::to_string(&result).context("encoding the result")?
    )?;
    stdout.flush()?;
    Ok(())
}

/// The requests of every connection, in the order it sends them. Keys are
/// spread over connections (`k % clients`), and each connection sends its
/// keys round by round, so one key's `seq` only ever goes up on the wire.
/// Built on every core: sealing costs about as much as opening.
fn build_requests(spec: &ClientSpec) -> anyhow::Result<Vec<Vec<Vec<u8>>>> {
    let pub_key: PublicKey = spec
        .pub_id
        .parse()
        .map_err(|e| anyhow::anyhow!("pub id {:?}: {e}", spec.pub_id))?;
    let clients = spec.clients.max(1) as usize;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(clients);
    let head = |len: usize| {
        format!(
            "POST /update HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n",
            spec.addr
        )
    };
    let build_conn = |c: usize| -> anyhow::Result<Vec<Vec<u8>>> {
        let keys: Vec<(u32, _)> = (c as u32..spec.keys)
            .step_by(clients)
            .map(|k| (k, bench_key(k)))
            .collect();
        let mut out = Vec::with_capacity(keys.len() * spec.rounds as usize);
        for r in 0..spec.rounds {
            for (k, kp) in &keys {
                if spec.kind == RunKind::Ip {
                    let request = format!("GET /ip HTTP/1.1\r\nHost: {}\r\n\r\n", spec.addr);
                    out.push(request.into_bytes());
                    continue;
                }
                let ip = match spec.kind {
                    RunKind::Change | RunKind::ChangeFull => change_ip(spec.ip_tag, r, *k),
                    RunKind::Register | RunKind::NoChange | RunKind::Ip => home_ip(*k),
                };
                let msg = UpdateMsg {
                    op: Op::Update,
                    name: bench_name(*k),
                    domain: spec.domain.clone(),
                    ip: Some(ip),
                    ip6: None,
                    pub_id: pub_key,
                    public_key: kp.public(),
                    seq: spec.seq_base + u64::from(r),
                    token_sha256: None,
                    txt: None,
                };
                let envelope = seal::seal_update(&msg.sign(kp), &pub_key)?;
                let body = serde_json::to_vec(&envelope)?;
                let mut request = head(body.len()).into_bytes();
                request.extend_from_slice(&body);
                out.push(request);
            }
        }
        Ok(out)
    };
    let mut per_conn: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients];
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let build_conn = &build_conn;
                scope.spawn(move || {
                    (t..clients)
                        .step_by(threads)
                        .map(|c| build_conn(c).map(|reqs| (c, reqs)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        for handle in handles {
            let built = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a request-building thread panicked"))??;
            for (c, reqs) in built {
                if let Some(slot) = per_conn.get_mut(c) {
                    *slot = reqs;
                }
            }
        }
        Ok(())
    })?;
    Ok(per_conn)
}

/// One keep-alive connection per client.
async fn connect_all(spec: &ClientSpec) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(spec.clients as usize);
    for _ in 0..spec.clients {
        let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(spec.addr))
            .await
            .with_context(|| format!("connecting to {} timed out", spec.addr))?
            .with_context(|| format!("connecting to {}", spec.addr))?;
        // Each request is written whole; no reason to wait for an ACK.
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// What one connection counted.
#[derive(Default)]
struct ConnOut {
    sent: u64,
    ok: u64,
    errors: u64,
    samples: Vec<String>,
    latencies_us: Vec<u32>,
}

impl ConnOut {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(what);
        }
    }
}

/// Runs every connection until its requests are sent or `spec.max_secs`
/// passed, and sums up.
async fn drive(
    spec: &ClientSpec,
    streams: Vec<TcpStream>,
    per_conn: Vec<Vec<Vec<u8>>>,
) -> ClientResult {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(spec.max_secs);
    let want = spec.kind.expected_body();
    let mut set = JoinSet::new();
    for (stream, requests) in streams.into_iter().zip(per_conn) {
        set.spawn(connection(stream, requests, deadline, want));
    }
    let mut result = ClientResult::default();
    let mut latencies: Vec<u32> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(out) => {
                result.sent += out.sent;
                result.ok += out.ok;
                result.errors += out.errors;
                for sample in out.samples {
                    if result.error_samples.len() < ERROR_SAMPLES {
                        result.error_samples.push(sample);
                    }
                }
                latencies.extend(out.latencies_us);
            }
            Err(e) => {
                result.errors += 1;
                result
                    .error_samples
                    .push(format!("connection task failed: {e}"));
            }
        }
    }
    result.elapsed_s = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    result.p50_us = percentile(&latencies, 50.0);
    result.p99_us = percentile(&latencies, 99.0);
    result.max_us = latencies.last().copied().map_or(0, u64::from);
    result
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().map_or(0, u64::from)
}

/// Sends `requests` one after another on `stream`.
async fn connection(
    mut stream: TcpStream,
    requests: Vec<Vec<u8>>,
    deadline: Instant,
    want: &'static str,
) -> ConnOut {
    let mut out = ConnOut {
        latencies_us: Vec::with_capacity(requests.len()),
        ..ConnOut::default()
    };
    let mut buf = Vec::with_capacity(4096);
    for request in &requests {
        if Instant::now() >= deadline {
            break;
        }
        out.sent += 1;
        let sent_at = Instant::now();
        let answer = timeout(REQUEST_TIMEOUT, exchange(&mut stream, request, &mut buf)).await;
        let took = u32::try_from(sent_at.elapsed().as_micros()).unwrap_or(u32::MAX);
        out.latencies_us.push(took);
        match answer {
            Ok(Ok((200, body))) if body.contains(want) => out.ok += 1,
            Ok(Ok((status, body))) => out.error(format!("HTTP {status}: {body}")),
            Ok(Err(e)) => {
                out.error(format!("connection: {e}"));
                break;
            }
            Err(_) => {
                out.error(format!("no answer within {REQUEST_TIMEOUT:?}"));
                break;
            }
        }
    }
    out
}

/// Writes one request and reads its answer: (status, body).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Error, ErrorKind};
    stream.write_all(request).await?;
    buf.clear();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::new(ErrorKind::InvalidData, "answer head too long"));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "server closed"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Error::new(ErrorKind::InvalidData, "answer head is not UTF-8"))?;
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("status line: {head:?}")))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "answer has no Content-Length"))?;
    while buf.len() < head_end + length {
        buf.reserve(head_end + length - buf.len());
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "server closed mid-body",
            ));
        }
    }
    if buf.len() > head_end + length {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "bytes after the answer (nothing was pipelined)",
        ));
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Ok((status, body))
}
