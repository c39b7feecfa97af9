//! What the benchmark's processes tell each other: a spec goes to a child
//! as JSON on its command line, a report comes back as one JSON line on its
//! standard output (`RESULT {…}`); everything else a child says goes to
//! standard error, for a person.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use peach_dyndns_protocol::identity::Keypair;
use serde::{Deserialize, Serialize};

/// The prefix of the line that carries a child's report.
pub const RESULT_PREFIX: &str = "RESULT ";

/// The bench keys are derived from their index, so the server phase (which
/// puts them on its allowlist) and the client child (which signs with them)
/// agree without passing secrets around.
pub fn bench_key(k: u32) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(b"pdd-bnch");
    seed[8..12].copy_from_slice(&k.to_le_bytes());
    Keypair::from_seed(&seed)
}

/// The label bench key `k` registers.
pub fn bench_name(k: u32) -> String {
    format!("b{k}")
}

/// What a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunKind {
    /// Every key registers its name (a new name: DNS changes).
    Register,
    /// The address each name already has, with a higher `seq`: the server
    /// must not touch DNS (`changed: false`).
    NoChange,
    /// A new address on every request (`changed: true`).
    Change,
    /// As `Change`, with the registry committing every write in its own
    /// transaction (`Registry::set_max_batch(1)`): plain per-request
    /// `synchronous=FULL`, one fsync per update, against the group commit.
    ChangeFull,
    /// `GET /ip`: no crypto, no registry, no DNS; what the HTTP layer
    /// (hyper, warp, routing) costs per request, for the breakdown.
    Ip,
}

impl RunKind {
    /// What the body of every good answer of this run contains.
    pub fn expected_body(self) -> &'static str {
        match self {
            RunKind::Register | RunKind::Change | RunKind::ChangeFull => "\"changed\":true",
            RunKind::NoChange => "\"changed\":false",
            RunKind::Ip => "127.0.0.1",
        }
    }

    /// For tables.
    pub fn label(self) -> &'static str {
        match self {
            RunKind::Register => "register",
            RunKind::NoChange => "no-change",
            RunKind::Change => "change",
            RunKind::ChangeFull => "change 1/tx",
            RunKind::Ip => "GET /ip",
        }
    }
}

/// The address key `k` registers with, and keeps in no-change runs:
/// 172.16.0.0/12 (private; the server is configured to allow it).
pub fn home_ip(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (k & 0x000f_ffff))
}

/// The address of key `k` in round `r` of a change run tagged `tag`:
/// 10.0.0.0/8 as `tag` (2 bits) | round mod 64 (6 bits) | key (16 bits). Two
/// consecutive rounds of a run differ, and runs one after another on the
/// same names use different tags, so every request changes the address;
/// none equals a [`home_ip`].
pub fn change_ip(tag: u32, r: u32, k: u32) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    Ipv4Addr::from(base | ((tag & 3) << 22) | ((r % 64) << 16) | (k & 0xffff))
}

/// What a `--client` child does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    /// The server's HTTP address.
    pub addr: SocketAddr,
    /// The pub's SSB id: updates are sealed to it.
    pub pub_id: String,
    /// The zone.
    pub domain: String,
    /// Bench keys `0..keys` take part.
    pub keys: u32,
    /// What is sent.
    pub kind: RunKind,
    /// Rounds: every key sends one update per round.
    pub rounds: u32,
    /// `seq` of round 0; round `r` sends `seq_base + r`.
    pub seq_base: u64,
    /// The tag of [`change_ip`] (change runs only).
    pub ip_tag: u32,
    /// Concurrent keep-alive HTTP/1.1 connections.
    pub clients: u32,
    /// The run stops sending after this long even if requests are left.
    pub max_secs: f64,
}

/// What a `--client` child measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientResult {
    /// Requests built before timing.
    pub built: u64,
    /// Seconds spent building them (not timed).
    pub build_s: f64,
    /// Requests sent.
    pub sent: u64,
    /// 200 answers with the expected `changed`.
    pub ok: u64,
    /// Anything else: another status, a wrong `changed`, a broken
    /// connection, a timeout.
    pub errors: u64,
    /// The first few errors, for a person.
    pub error_samples: Vec<String>,
    /// From "go" until the last connection finished.
    pub elapsed_s: f64,
    /// Latency percentiles of every sent request, in microseconds
    /// (request written → whole answer read).
    pub p50_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
    /// See `p50_us`.
    pub max_us: u64,
    /// The client's own CPU time during the run.
    pub cpu_s: f64,
}

impl ClientResult {
    /// Accepted updates per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.ok as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// Which DNS backend a server phase uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BackendSpec {
    /// The server answers DNS itself.
    Embedded,
    /// RFC 2136 to testkit's named with its session key.
    BindLocal {
        /// named's address.
        server: SocketAddr,
        /// named's session key file.
        session_key: PathBuf,
        /// named's process, whose CPU time is read from /proc.
        named_pid: u32,
    },
}

/// What a `--phase` child does: start a server, drive it with client
/// children, report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSpec {
    /// For tables: `embedded`, `bind-local`, `memory`.
    pub label: String,
    /// The DNS backend.
    pub backend: BackendSpec,
    /// The zone.
    pub domain: String,
    /// Bench keys (each holds one name).
    pub keys: u32,
    /// Concurrent HTTP connections.
    pub clients: u32,
    /// Time limit of each timed run.
    pub run_secs: f64,
    /// Rounds built for the no-change run (0: no such run).
    pub nochange_rounds: u32,
    /// Rounds built for the change run (0: no such run).
    pub change_rounds: u32,
    /// Rounds built for the `GET /ip` run (0: no such run).
    pub ip_rounds: u32,
    /// Rounds built for a change run with one commit (one fsync) per
    /// update, right after the group-committed change run (0: none).
    pub full_commit_rounds: u32,
    /// bind-local: measure named's raw rate with this many loops right
    /// before and right after the change run (0: not), so the comparison
    /// sees the same load on the machine.
    pub raw_bind_tasks: usize,
    /// Length of each of those raw runs.
    pub raw_bind_secs: f64,
    /// Memory phase: registered names to reach, one change run at each
    /// (empty: a throughput phase).
    pub memory_levels: Vec<u32>,
    /// Write the server's info log to a file, as an operator's server
    /// writes it to the journal.
    pub log: bool,
}

/// One timed run inside a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// What was sent.
    pub kind: RunKind,
    /// Registered names after the run.
    pub names: u64,
    /// The client's measurements.
    pub client: ClientResult,
    /// The server process's CPU time during the run.
    pub server_cpu_s: f64,
    /// named's CPU time during the run (bind-local only).
    pub named_cpu_s: Option<f64>,
    /// CPU seconds the whole machine was busy during the run (every
    /// process: ours, named, and whatever else runs on it).
    pub machine_busy_s: f64,
    /// CPU seconds the machine's cores sat idle during the run.
    pub machine_idle_s: f64,
    /// The server process's resident memory just before the run, KiB.
    pub rss_before_kb: u64,
    /// … and just after it.
    pub rss_after_kb: u64,
    /// Its peak resident memory so far, KiB.
    pub hwm_kb: u64,
    /// Registry transactions committed during the run (one fsync each).
    pub commits: u64,
    /// Updates that went to DNS during the run, and the µs they spent there.
    pub dns_wait: (u64, u64),
    /// Updates that waited for a commit, and the µs they waited.
    pub commit_wait: (u64, u64),
    /// Updates the server handled, and their µs from headers to answer.
    pub server_time: (u64, u64),
}

impl RunReport {
    /// Accepted updates per registry commit (per fsync).
    pub fn updates_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.client.ok as f64 / self.commits as f64
        }
    }

    /// Server CPU per accepted update, in milliseconds.
    pub fn server_ms_per_update(&self) -> f64 {
        per_update_ms(self.server_cpu_s, self.client.ok)
    }

    /// Cores' worth of CPU that processes other than the server, its
    /// client and named used during the run (other work on the machine).
    pub fn other_cores(&self) -> f64 {
        let ours = self.server_cpu_s + self.client.cpu_s + self.named_cpu_s.unwrap_or(0.0);
        if self.client.elapsed_s > 0.0 {
            ((self.machine_busy_s - ours) / self.client.elapsed_s).max(0.0)
        } else {
            0.0
        }
    }

    /// Idle cores on average during the run.
    pub fn idle_cores(&self) -> f64 {
        if self.client.elapsed_s > 0.0 {
            self.machine_idle_s / self.client.elapsed_s
        } else {
            0.0
        }
    }
}

/// `cpu_s` per update in milliseconds (0 with no updates).
pub fn per_update_ms(cpu_s: f64, updates: u64) -> f64 {
    if updates == 0 {
        0.0
    } else {
        cpu_s * 1000.0 / updates as f64
    }
}

/// What a `--phase` child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    /// The phase's label.
    pub label: String,
    /// Resident memory of the fresh process before the server started, KiB.
    pub rss_start_kb: u64,
    /// Resident memory once the server was up and idle, KiB.
    pub rss_idle_kb: u64,
    /// The runs, in order.
    pub runs: Vec<RunReport>,
    /// Memory phase: what a restart's re-apply costs at each level.
    pub reapply: Vec<Reapply>,
    /// bind-local: named's raw rate right before and right after the
    /// change run.
    pub raw_around: Vec<crate::ceiling::RawBind>,
}

/// `State::reapply_registry` (what `run` does at start) from the registry
/// file into a fresh, empty embedded zone: a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reapply {
    /// Names re-applied.
    pub names: u64,
    /// How long it took (wall time).
    pub secs: f64,
    /// The process's CPU time meanwhile, seconds (the running server was
    /// idle): what it costs when the machine is not shared.
    pub cpu_s: f64,
    /// Resident memory before, KiB.
    pub rss_before_kb: u64,
    /// Peak resident memory during it, KiB (the peak is reset first).
    pub peak_kb: u64,
    /// Resident memory after, KiB.
    pub rss_after_kb: u64,
}

impl Reapply {
    /// What the re-apply held only while it ran (peak over what stays:
    /// the fresh zone's records), KiB.
    pub fn transient_kb(&self) -> u64 {
        self.peak_kb.saturating_sub(self.rss_after_kb)
    }
}
