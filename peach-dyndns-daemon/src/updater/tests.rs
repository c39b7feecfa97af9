//! The update loop on tokio's paused clock, with every side effect faked.
//! Virtual time moves only when the test sleeps, so intervals, backoff and
//! the daily refresh are checked to the second.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use super::*;
use crate::fakes::{lock, Script, World, START_MS};
use crate::pubapi::UpdateError;

const MIN: u64 = 60;
const HOUR: u64 = 60 * MIN;

struct Running {
    config_tx: watch::Sender<Arc<Config>>,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

fn start(world: &World, config: Config) -> Running {
    let (status_tx, status) = watch::channel(Status::default());
    let updater = Updater::new(&config, world.services(), status_tx);
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (commands, commands_rx) = mpsc::channel(4);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(updater.run(config_rx, commands_rx, async {
        let _ = stop_rx.await;
    }));
    Running {
        config_tx,
        commands,
        status,
        stop: Some(stop),
        task,
    }
}

fn unreachable_err() -> UpdateError {
    UpdateError::Unreachable {
        url: "http://pub.test/update".into(),
        detail: "connection refused".into(),
    }
}

fn refused(status: u16, code: ErrorCode, retry_after: Option<u64>) -> UpdateError {
    UpdateError::Refused {
        status,
        code,
        message: format!("{code} for the test"),
        last_seq: None,
        max_seq: None,
        retry_after: retry_after.map(Duration::from_secs),
    }
}

/// A `stale_seq` or `invalid_seq` refusal carrying the pub's numbers.
fn seq_refusal(code: ErrorCode, last_seq: Option<u64>, max_seq: Option<u64>) -> UpdateError {
    UpdateError::Refused {
        status: code.http_status(),
        code,
        message: format!("{code} for the test"),
        last_seq,
        max_seq,
        retry_after: None,
    }
}

/// The first check registers the name: one signed, sealed update with the
/// discovered address and seq = wall clock ms, then DNS shows it → online.
#[tokio::test(start_paused = true)]
async fn first_check_registers_and_goes_online() {
    let world = World::new();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let got = world.pub_.received();
    assert_eq!(got.len(), 1);
    let msg = &got[0].msg;
    assert_eq!(msg.name, "eb4890");
    assert_eq!(msg.domain, "peach.dinosaur.is");
    assert_eq!(msg.ip, Some("24.12.12.12".parse().expect("v4")));
    assert_eq!(msg.public_key, world.pi.public());
    assert_eq!(msg.seq, START_MS);
    assert_eq!(got[0].url.as_str(), "http://pub.test/update");
    let st = run.status();
    assert_eq!(st.state, Phase::Online);
    assert!(st.online && st.dns_verified);
    assert_eq!(st.fqdn.as_deref(), Some("eb4890.peach.dinosaur.is"));
    assert_eq!(st.public_key, Some(world.pi.id()));
    assert_eq!(st.next_check_at, Some(START_MS / 1000 + 60));
    run.stop().await;
    let saved = StateStore::new(world.dir.path().join("state.json"))
        .load()
        .expect("state");
    assert_eq!(saved.seq(&world.pub_.keypair.public()), Some(START_MS));
    assert_eq!(saved.ip, Some("24.12.12.12".parse().expect("v4")));
    assert!(saved.dns_verified);
}

/// Checks come every 60 s; nothing is sent while nothing changes; a new
/// address is sent at the next check, with a higher seq.
#[tokio::test(start_paused = true)]
async fn checks_every_interval_and_sends_only_on_change() {
    let world = World::new();
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(10 * MIN + 1)).await;
    let checks: Vec<u64> = lock(&world.discover.calls)
        .iter()
        .map(|t| t.duration_since(start_at).as_secs())
        .collect();
    assert_eq!(checks, (0..=10).map(|i| i * MIN).collect::<Vec<_>>());
    assert_eq!(world.pub_.times(start_at), vec![0]);

    world.discover.set_v4("24.12.12.13");
    sleep(Duration::from_secs(MIN)).await;
    let got = world.pub_.received();
    assert_eq!(world.pub_.times(start_at), vec![0, 11 * MIN]);
    assert_eq!(got[1].msg.ip, Some("24.12.12.13".parse().expect("v4")));
    assert!(got[1].msg.seq > got[0].msg.seq);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// With nothing changing, an update still goes out once a day.
#[tokio::test(start_paused = true)]
async fn forced_refresh_every_24_hours() {
    let world = World::new();
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(48 * HOUR + 1)).await;
    assert_eq!(world.pub_.times(start_at), vec![0, 24 * HOUR, 48 * HOUR]);
    run.stop().await;
}

/// Failures back off 30 s, 60 s, … up to 30 min (jitter is the identity
/// here), the status says `error`, and success resets the schedule.
#[tokio::test(start_paused = true)]
async fn backoff_doubles_to_the_cap_and_resets_on_success() {
    let world = World::new();
    for _ in 0..9 {
        world.pub_.push(Script::Fail(unreachable_err()));
    }
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.last_error_code.as_deref(), Some("unreachable"));
    assert!(st
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("connection refused"));
    assert_eq!(st.failures, 1);
    assert!(!st.online);

    sleep(Duration::from_secs(4 * HOUR)).await;
    // Gaps: 30, 60, 120, 240, 480, 960, 1800 (cap), 1800, then success.
    let times = world.pub_.times(start_at);
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..9], [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    // After the success, back to the normal interval and no more sends.
    assert_eq!(times.len(), 10, "{times:?}");
    let st = run.status();
    assert_eq!(st.state, Phase::Online);
    assert_eq!(st.failures, 0);
    assert_eq!(st.last_error, None);
    run.stop().await;
}

#[test]
fn backoff_schedule_and_jitter_bounds() {
    let (min, max) = (Duration::from_secs(30), Duration::from_secs(1800));
    let secs: Vec<u64> = (1..=9).map(|n| backoff(n, min, max).as_secs()).collect();
    assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    assert_eq!(backoff(u32::MAX, min, max), max);
    let jitter = random_jitter();
    for _ in 0..1000 {
        let d = jitter(Duration::from_secs(100));
        assert!(
            d >= Duration::from_secs(75) && d <= Duration::from_secs(100),
            "{d:?}"
        );
    }
}

/// `Retry-After` longer than the backoff is honoured.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let world = World::new();
    world.pub_.push(Script::Fail(refused(
        429,
        ErrorCode::RateLimited,
        Some(300),
    )));
    world.pub_.push(Script::Fail(refused(
        503,
        ErrorCode::DnsUnavailable,
        Some(5),
    )));
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(HOUR)).await;
    // 300 s (Retry-After beats 30 s), then 60 s (backoff beats 5 s).
    assert_eq!(world.pub_.times(start_at), vec![0, 300, 360]);
    run.stop().await;
}

/// A refusal that retrying cannot fix parks the loop: no sends and no
/// checks for hours, until the config changes.
#[tokio::test(start_paused = true)]
async fn a_non_retryable_refusal_parks_until_the_config_changes() {
    let world = World::new();
    world
        .pub_
        .push(Script::Fail(refused(403, ErrorCode::NotFollowed, None)));
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(6 * HOUR)).await;
    assert_eq!(world.pub_.times(start_at), vec![0]);
    assert_eq!(lock(&world.discover.calls).len(), 1);
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert!(st.parked);
    assert_eq!(st.last_error_code.as_deref(), Some("not_followed"));
    assert_eq!(st.next_check_at, None);

    // The same config again is no change.
    run.config_tx.send_replace(Arc::new(world.config()));
    sleep(Duration::from_secs(HOUR)).await;
    assert_eq!(world.pub_.received().len(), 1);

    let mut changed = world.config();
    changed.registration.name = Some("eb4891".into());
    run.config_tx.send_replace(Arc::new(changed));
    sleep(Duration::from_secs(1)).await;
    let got = world.pub_.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].msg.name, "eb4891");
    let st = run.status();
    assert_eq!(st.state, Phase::Online);
    assert!(!st.parked);
    run.stop().await;
}

/// `update_now` sends even when nothing changed, and even when parked,
/// and answers with the status after the check.
#[tokio::test(start_paused = true)]
async fn update_now_forces_a_send_and_replies_with_status() {
    let world = World::new();
    world.pub_.push(Script::Accept);
    world
        .pub_
        .push(Script::Fail(refused(409, ErrorCode::NameTaken, None)));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let (tx, rx) = oneshot::channel();
    run.commands
        .send(Command::UpdateNow(tx))
        .await
        .expect("send");
    let st = rx.await.expect("reply");
    assert_eq!(st.last_error_code.as_deref(), Some("name_taken"));
    assert!(st.parked);
    let (tx, rx) = oneshot::channel();
    run.commands
        .send(Command::UpdateNow(tx))
        .await
        .expect("send");
    let st = rx.await.expect("reply");
    assert_eq!(st.state, Phase::Online);
    assert_eq!(world.pub_.received().len(), 3);
    run.stop().await;
}

/// `stale_seq` carries the pub's last seq; the daemon moves past it and
/// tries again at once.
#[tokio::test(start_paused = true)]
async fn stale_seq_moves_past_the_pubs_seq() {
    let world = World::new();
    let theirs = START_MS + 5_000_000;
    world.pub_.push(Script::Fail(seq_refusal(
        ErrorCode::StaleSeq,
        Some(theirs),
        None,
    )));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let got = world.pub_.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].msg.seq, theirs + 1);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// seq never goes backwards across a restart, even when the wall clock
/// does; and a restart with unchanged addresses sends nothing.
#[tokio::test(start_paused = true)]
async fn seq_survives_a_restart_with_the_clock_set_back() {
    let world = World::new();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    run.stop().await;
    assert_eq!(world.pub_.received().len(), 1);

    // Same addresses after restart: no update.
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(world.pub_.received().len(), 1);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;

    *lock(&world.clock_ms) = START_MS - 3_600_000;
    world.discover.set_v4("24.12.12.99");
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let got = world.pub_.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].msg.seq, START_MS + 1);
    run.stop().await;
}

/// DNS that lags shows `working` and is asked again every 5 s; then
/// `online`.
#[tokio::test(start_paused = true)]
async fn dns_lag_is_working_then_online() {
    let world = World::new();
    *lock(&world.dns.lag) = 3;
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let st = run.status();
    assert_eq!(st.state, Phase::Working);
    assert!(!st.online && !st.dns_verified);
    assert!(st
        .dns_detail
        .as_deref()
        .unwrap_or("")
        .contains("expected 24.12.12.12"));
    sleep(Duration::from_secs(15)).await;
    let st = run.status();
    assert_eq!(*lock(&world.dns.queries), 4);
    assert_eq!(st.state, Phase::Online);
    assert!(st.online && st.dns_verified);
    assert_eq!(world.pub_.received().len(), 1);
    run.stop().await;
}

/// DNS that never shows the name turns the state to `error` after the
/// verification window, without resending.
#[tokio::test(start_paused = true)]
async fn dns_that_never_matches_is_an_error() {
    let world = World::new();
    *lock(&world.dns.lag) = u32::MAX;
    let run = start(&world, world.config());
    sleep(Duration::from_secs(10 * MIN)).await;
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.last_error_code.as_deref(), Some("dns_mismatch"));
    assert!(!st.online);
    assert_eq!(world.pub_.received().len(), 1);
    run.stop().await;
}

/// Without a name or pub the loop waits (`unconfigured`); `enabled =
/// false` is `disabled`; configuring starts it at once.
#[tokio::test(start_paused = true)]
async fn unconfigured_and_disabled_wait_for_config() {
    let world = World::new();
    let mut config = world.config();
    config.registration.name = None;
    let run = start(&world, config);
    sleep(Duration::from_secs(HOUR)).await;
    assert_eq!(run.status().state, Phase::Unconfigured);
    assert_eq!(lock(&world.discover.calls).len(), 0);

    let mut disabled = world.config();
    disabled.enabled = false;
    run.config_tx.send_replace(Arc::new(disabled));
    sleep(Duration::from_secs(HOUR)).await;
    assert_eq!(run.status().state, Phase::Disabled);
    assert!(world.pub_.received().is_empty());

    run.config_tx.send_replace(Arc::new(world.config()));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// With only `pub_id` configured, the URL and zone come from the pub's
/// announcement in the local sbot; none yet is a retryable error.
#[tokio::test(start_paused = true)]
async fn the_pub_is_found_through_its_announcement() {
    let world = World::new();
    let mut config = world.config();
    config.registration.url = None;
    config.registration.domain = None;
    let start_at = Instant::now();
    let run = start(&world, config);
    sleep(Duration::from_secs(1)).await;
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.last_error_code.as_deref(), Some("no_pub"));
    assert!(!st.parked);

    let content = serde_json::json!({
        "type": "peach-dyndns", "domain": "dyn.example.org",
        "url": "http://announced.test:8053/update", "ttl": 60
    });
    let pub_id = world.pub_.keypair.id();
    *lock(&world.directory.list) =
        crate::directory::latest_per_author(vec![(pub_id.as_str(), 1, &content)], false);
    sleep(Duration::from_secs(30)).await;
    let got = world.pub_.received();
    assert_eq!(world.pub_.times(start_at), vec![30]);
    assert_eq!(got[0].url.as_str(), "http://announced.test:8053/update");
    assert_eq!(got[0].msg.domain, "dyn.example.org");
    assert_eq!(run.status().fqdn.as_deref(), Some("eb4890.dyn.example.org"));
    run.stop().await;
}

/// A secret readable by others is refused, shown as an error, retried.
#[tokio::test(start_paused = true)]
async fn an_insecure_secret_is_an_error_in_the_status() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    let secret = world.dir.path().join("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.last_error_code.as_deref(), Some("secret"));
    assert!(st.last_error.as_deref().unwrap_or("").contains("chmod 600"));
    assert!(world.pub_.received().is_empty());
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    sleep(Duration::from_secs(30)).await;
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// Shutdown while the pub does not answer: the loop stops within the
/// grace period, and the seq it reserved is on disk.
#[tokio::test(start_paused = true)]
async fn shutdown_with_a_request_in_flight_stops_within_the_grace() {
    let world = World::new();
    world.pub_.push(Script::Hang);
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(world.pub_.received().len(), 1);
    let before = Instant::now();
    run.stop().await;
    assert!(before.elapsed() <= SHUTDOWN_GRACE, "{:?}", before.elapsed());
    let saved = StateStore::new(world.dir.path().join("state.json"))
        .load()
        .expect("state");
    assert_eq!(saved.seq(&world.pub_.keypair.public()), Some(START_MS));
}

/// `--once`-style use: one check gives the status without a loop.
#[tokio::test(start_paused = true)]
async fn a_single_check() {
    let world = World::new();
    let config = world.config();
    let (status_tx, _status) = watch::channel(Status::default());
    let mut updater = Updater::new(&config, world.services(), status_tx);
    let next = updater.check(&config, false).await;
    assert!(matches!(next, Next::At(_)));
    assert_eq!(updater.status().state, Phase::Online);
    world.advance_clock(Duration::from_secs(5));
    assert_eq!(
        updater.state().seq(&world.pub_.keypair.public()),
        Some(START_MS)
    );
}

/// A new name releases the old one first (a pub lets a key hold only so
/// many names), then registers the new one.
#[tokio::test(start_paused = true)]
async fn a_rename_releases_the_old_name_first() {
    let world = World::new();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let mut renamed = world.config();
    renamed.registration.name = Some("eb4891".into());
    run.config_tx.send_replace(Arc::new(renamed));
    sleep(Duration::from_secs(1)).await;
    let got: Vec<(Op, String, bool)> = world
        .pub_
        .received()
        .iter()
        .map(|r| (r.msg.op, r.msg.name.clone(), r.msg.ip.is_some()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Op::Update, "eb4890".into(), true),
            (Op::Release, "eb4890".into(), false),
            (Op::Update, "eb4891".into(), true),
        ]
    );
    assert_eq!(
        run.status().fqdn.as_deref(),
        Some("eb4891.peach.dinosaur.is")
    );
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// A pub that cannot be reached for the release of the old name at the
/// same pub: retried with backoff, the new name is not sent meanwhile.
#[tokio::test(start_paused = true)]
async fn a_failed_release_at_the_same_pub_is_retried() {
    let world = World::new();
    world.pub_.push(Script::Accept);
    world.pub_.push(Script::Fail(unreachable_err()));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let mut renamed = world.config();
    renamed.registration.name = Some("eb4891".into());
    run.config_tx.send_replace(Arc::new(renamed));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(world.pub_.received().len(), 2);
    assert_eq!(run.status().state, Phase::Error);
    sleep(Duration::from_secs(30)).await;
    let got: Vec<Op> = world.pub_.received().iter().map(|r| r.msg.op).collect();
    assert_eq!(got, vec![Op::Update, Op::Release, Op::Release, Op::Update]);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

const DAY: u64 = 24 * HOUR;

fn saved(world: &World) -> State {
    StateStore::new(world.dir.path().join("state.json"))
        .load()
        .expect("state")
}

/// seq is kept per pub: a later seq a pub told us (believably) moves the
/// seq sent to that pub only; another pub gets the clock's.
#[tokio::test(start_paused = true)]
async fn seq_is_kept_per_pub() {
    let world = World::new();
    let second = peach_dyndns_protocol::identity::Keypair::generate();
    lock(&world.pub_.also).push(second.clone());
    let theirs = START_MS + 10 * 3_600_000;
    world.pub_.push(Script::Fail(seq_refusal(
        ErrorCode::StaleSeq,
        Some(theirs),
        None,
    )));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let mut moved = world.config();
    moved.registration.pub_id = Some(second.public());
    run.config_tx.send_replace(Arc::new(moved));
    sleep(Duration::from_secs(1)).await;
    let got: Vec<(Op, PublicKey, u64)> = world
        .pub_
        .received()
        .iter()
        .map(|r| (r.msg.op, r.msg.pub_id, r.msg.seq))
        .collect();
    let first = world.pub_.keypair.public();
    assert_eq!(
        got,
        vec![
            (Op::Update, first, START_MS),
            (Op::Update, first, theirs + 1),
            (Op::Release, first, theirs + 2),
            // The second pub never saw the first's count.
            (Op::Update, second.public(), START_MS),
        ]
    );
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
    let s = saved(&world);
    assert_eq!(s.seq(&first), Some(theirs + 2));
    assert_eq!(s.seq(&second.public()), Some(START_MS));
}

/// Regression: a pub's `stale_seq` with `last_seq = 2^64 - 2` was
/// believed, freezing the key's seq at the top for good. Now it is not
/// believed: no retry above the bound, the state keeps our own seq, the
/// loop parks with `seq_not_believed`.
#[tokio::test(start_paused = true)]
async fn a_last_seq_far_ahead_is_not_believed() {
    let world = World::new();
    world.pub_.push(Script::Fail(seq_refusal(
        ErrorCode::StaleSeq,
        Some(u64::MAX - 1),
        None,
    )));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(HOUR)).await;
    let seqs: Vec<u64> = world.pub_.received().iter().map(|r| r.msg.seq).collect();
    assert_eq!(seqs, vec![START_MS], "no second try past the pub's claim");
    let st = run.status();
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.problem, Some(Problem::SeqNotBelieved));
    assert_eq!(st.last_error_code.as_deref(), Some("seq_not_believed"));
    assert!(st.parked);
    let pub_id = world.pub_.keypair.public();
    assert_eq!(saved(&world).seq(&pub_id), Some(START_MS));

    // A config change tries again, from our own seq, within the bound.
    let mut changed = world.config();
    changed.registration.name = Some("eb4891".into());
    run.config_tx.send_replace(Arc::new(changed));
    sleep(Duration::from_secs(1)).await;
    let got = world.pub_.received();
    assert_eq!(got.last().map(|r| r.msg.seq), Some(START_MS + 1));
    for r in &got {
        assert!(r.msg.seq <= max_seq(None, START_MS), "{}", r.msg.seq);
    }
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// Regression: the `seq` in a 200 answer was adopted (`max(last, seq)`),
/// so a pub answering `"seq": 2^64-2` froze the key. It is ignored.
#[tokio::test(start_paused = true)]
async fn the_seq_in_an_accepted_answer_is_not_adopted() {
    let world = World::new();
    *lock(&world.pub_.answer_seq) = Some(u64::MAX - 1);
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    world.discover.set_v4("24.12.12.13");
    sleep(Duration::from_secs(MIN)).await;
    let seqs: Vec<u64> = world.pub_.received().iter().map(|r| r.msg.seq).collect();
    assert_eq!(seqs, vec![START_MS, START_MS + 1]);
    run.stop().await;
    assert_eq!(
        saved(&world).seq(&world.pub_.keypair.public()),
        Some(START_MS + 1)
    );
}

/// `invalid_seq` (our seq more than a day ahead of the pub): fall back to
/// the clock, or just past the pub's believable `last_seq`, within its
/// `max_seq`, and try once more.
#[tokio::test(start_paused = true)]
async fn invalid_seq_falls_back_to_the_clock_within_the_bound() {
    let world = World::new();
    let pub_id = world.pub_.keypair.public();
    let ahead = START_MS + 23 * 3_600_000;
    let mut state = State::default();
    state.set_seq(&pub_id, ahead);
    StateStore::new(world.dir.path().join("state.json"))
        .save(&state)
        .expect("save");
    // The pub's clock is behind ours: it accepts at most START_MS + 1 s.
    world.pub_.push(Script::Fail(seq_refusal(
        ErrorCode::InvalidSeq,
        Some(START_MS - 5_000),
        Some(START_MS + 1_000),
    )));
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let seqs: Vec<u64> = world.pub_.received().iter().map(|r| r.msg.seq).collect();
    assert_eq!(seqs, vec![ahead + 1, START_MS]);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
    assert_eq!(saved(&world).seq(&pub_id), Some(START_MS));
}

/// `invalid_seq` whose numbers are absurd (`last_seq = 2^64 - 2`): the
/// retry uses the clock, and a second refusal is the end (parked), never a
/// third try or a seq past the bound.
#[tokio::test(start_paused = true)]
async fn invalid_seq_with_absurd_numbers_retries_once_from_the_clock() {
    let world = World::new();
    for _ in 0..2 {
        world.pub_.push(Script::Fail(seq_refusal(
            ErrorCode::InvalidSeq,
            Some(u64::MAX - 1),
            Some(u64::MAX),
        )));
    }
    let run = start(&world, world.config());
    sleep(Duration::from_secs(HOUR)).await;
    let seqs: Vec<u64> = world.pub_.received().iter().map(|r| r.msg.seq).collect();
    assert_eq!(seqs, vec![START_MS, START_MS]);
    let st = run.status();
    assert_eq!(st.problem, Some(Problem::Refused(ErrorCode::InvalidSeq)));
    assert!(st.parked);
    run.stop().await;
    assert_eq!(
        saved(&world).seq(&world.pub_.keypair.public()),
        Some(START_MS)
    );
}

/// A state file whose seq for a pub is more than a day ahead of the clock
/// (from a clock far ahead, or a v1 pub's answer) is not built on: the
/// clock decides, so the seq sent stays within the bound.
#[tokio::test(start_paused = true)]
async fn a_recorded_seq_far_ahead_is_replaced_by_the_clock() {
    let world = World::new();
    let pub_id = world.pub_.keypair.public();
    let mut state = State::default();
    state.set_seq(&pub_id, u64::MAX - 1);
    StateStore::new(world.dir.path().join("state.json"))
        .save(&state)
        .expect("save");
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let seqs: Vec<u64> = world.pub_.received().iter().map(|r| r.msg.seq).collect();
    assert_eq!(seqs, vec![START_MS]);
    run.stop().await;
}

/// A v1 state file's single `last_seq` is migrated under its pub.
#[tokio::test(start_paused = true)]
async fn a_v1_state_file_is_migrated() {
    let world = World::new();
    let pub_id = world.pub_.keypair.public();
    std::fs::write(
        world.dir.path().join("state.json"),
        format!(r#"{{"last_seq": {}, "pub_id": "{pub_id}"}}"#, START_MS + 7),
    )
    .expect("v1 state");
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(world.pub_.received()[0].msg.seq, START_MS + 8);
    run.stop().await;
    let text = std::fs::read_to_string(world.dir.path().join("state.json")).expect("state");
    assert!(!text.contains("last_seq"), "{text}");
}

/// Regression: `Retry-After: 18446744073709551615` panicked the daemon in
/// `Instant` arithmetic. It is clamped to a day.
#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_clamped_and_does_not_panic() {
    let world = World::new();
    world.pub_.push(Script::Fail(UpdateError::Refused {
        status: 429,
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
        last_seq: None,
        max_seq: None,
        retry_after: Some(Duration::from_secs(u64::MAX)),
    }));
    let start_at = Instant::now();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(run.status().next_check_at, Some(START_MS / 1000 + DAY));
    sleep(Duration::from_secs(DAY + 10)).await;
    assert_eq!(world.pub_.times(start_at), vec![0, DAY]);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// Regression: a huge interval in a config (here one that skipped
/// validation) panicked in `Instant` arithmetic; it is clamped to a week.
#[tokio::test(start_paused = true)]
async fn huge_config_intervals_are_clamped() {
    let world = World::new();
    let mut config = world.config();
    config.check_interval = Duration::from_secs(u64::MAX);
    config.refresh_interval = Duration::from_secs(u64::MAX);
    config.backoff_min = Duration::from_secs(u64::MAX);
    config.backoff_max = Duration::from_secs(u64::MAX);
    world.pub_.push(Script::Fail(unreachable_err()));
    let start_at = Instant::now();
    let run = start(&world, config);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(run.status().state, Phase::Error);
    assert_eq!(run.status().next_check_at, Some(START_MS / 1000 + 7 * DAY));
    sleep(Duration::from_secs(7 * DAY)).await;
    assert_eq!(world.pub_.times(start_at), vec![0, 7 * DAY]);
    assert_eq!(run.status().state, Phase::Online);
    run.stop().await;
}

/// Discovery is asked with the pub's `/ip` and the key its answer must be
/// signed by; what it skipped (a forged `/ip`) is shown in the status.
#[tokio::test(start_paused = true)]
async fn discovery_gets_the_pubs_key_and_skipped_sources_are_shown() {
    let world = World::new();
    let reason = "http://pub.test/ip: not believed: bad signature".to_string();
    lock(&world.discover.skipped).push(reason.clone());
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let asked = lock(&world.discover.pubs).clone();
    assert_eq!(
        asked,
        vec![Some(crate::ip::PubIp {
            url: Url::parse("http://pub.test/ip").expect("url"),
            pub_id: world.pub_.keypair.public(),
        })]
    );
    let st = run.status();
    assert_eq!(st.skipped_sources, vec![reason]);
    assert_eq!(st.state, Phase::Online);
    let json = serde_json::to_value(&st).expect("json");
    assert!(json["skipped_sources"][0]
        .as_str()
        .unwrap_or("")
        .contains("not believed"));
    run.stop().await;
}

/// Regression: DNS was asked only after an update, so the dot stayed green
/// after the pub's DNS stopped answering with our address. It is asked at
/// every check.
#[tokio::test(start_paused = true)]
async fn dns_is_checked_at_every_check() {
    let world = World::new();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    assert!(run.status().online);
    assert_eq!(*lock(&world.dns.queries), 1);
    sleep(Duration::from_secs(3 * MIN)).await;
    assert_eq!(*lock(&world.dns.queries), 4);
    assert!(run.status().online);

    // The pub's DNS loses the record.
    *lock(&world.pub_.served) = crate::ip::Addresses::default();
    sleep(Duration::from_secs(MIN)).await;
    let st = run.status();
    assert!(!st.online && !st.dns_verified, "{st:?}");
    assert_eq!(st.state, Phase::Error);
    assert_eq!(st.problem, Some(Problem::DnsMismatch));
    assert!(st
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("no longer answers"));
    assert_eq!(world.pub_.received().len(), 1);
    run.stop().await;
    assert!(!saved(&world).dns_verified);
}

/// The event log: an accepted update and the DNS answering, an address
/// change, a failure repeated by the backoff counted in one entry, and the
/// owner's release (which forgets the name; a second one has nothing to
/// release).
#[tokio::test(start_paused = true)]
async fn events_are_logged_and_release_forgets_the_name() {
    use crate::events::EventKind;
    let world = World::new();
    let run = start(&world, world.config());
    sleep(Duration::from_secs(1)).await;
    let kinds = |st: &Status| -> Vec<EventKind> {
        st.events.newest_first().iter().map(|e| e.kind).collect()
    };
    assert_eq!(
        kinds(&run.status()),
        [EventKind::DnsVerified, EventKind::Accepted]
    );

    world.discover.set_v4("24.12.12.13");
    sleep(Duration::from_secs(MIN)).await;
    let st = run.status();
    let list = st.events.newest_first();
    assert_eq!(list[2].kind, EventKind::AddressChanged, "{list:#?}");
    assert!(list[2].message.contains("to 24.12.12.13"), "{list:#?}");

    world.discover.set_v4("24.12.12.14");
    for _ in 0..3 {
        world.pub_.push(Script::Fail(unreachable_err()));
    }
    sleep(Duration::from_secs(MIN + 30 + 60 + 1)).await;
    let st = run.status();
    let failed: Vec<_> = st
        .events
        .newest_first()
        .into_iter()
        .filter(|e| e.kind == EventKind::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].count, 3, "{failed:#?}");
    assert_eq!(failed[0].code.as_deref(), Some("unreachable"));
    sleep(Duration::from_secs(5 * MIN)).await;
    assert_eq!(run.status().state, Phase::Online);

    let (tx, rx) = oneshot::channel();
    run.commands.send(Command::Release(tx)).await.expect("send");
    let st = rx.await.expect("reply").expect("released");
    assert_eq!(st.registered, None);
    assert_eq!(st.events.newest_first()[0].kind, EventKind::Released);
    let last = world.pub_.received().pop().expect("the release went out");
    assert_eq!(last.msg.op, Op::Release);
    assert_eq!(saved(&world).fqdn, None, "the state file forgets it");
    let (tx, rx) = oneshot::channel();
    run.commands.send(Command::Release(tx)).await.expect("send");
    let err = rx.await.expect("reply").expect_err("nothing to release");
    assert!(err.contains("holds no name"), "{err}");
    run.stop().await;
}
