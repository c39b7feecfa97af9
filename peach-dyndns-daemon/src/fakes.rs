//! Fakes of every side effect, for the unit tests (compiled only in tests).
//!
//! The fake pub opens each envelope with its real keypair and checks the
//! signature with the protocol crate, so the tests see exactly what a real
//! pub would receive.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::UpdateMsg;
use peach_dyndns_protocol::seal::{open_envelope, Envelope};
use reqwest::Url;
use tokio::time::Instant;

use crate::config::{Config, DnsConfig};
use crate::directory::{Announcement, DirectoryError, PubDirectory};
use crate::dns::{DnsAnswer, DnsCheck, DnsError};
use crate::ip::{Addresses, Discover, Found, IpError, PubIp};
use crate::pubapi::{Accepted, PubApi, UpdateError};
use crate::updater::Services;
use crate::BoxFuture;

/// Locks a test mutex, ignoring poisoning (a failed test already says why).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Discovery that answers with whatever the test set.
#[derive(Default)]
pub struct FakeDiscover {
    /// The answer; `None` fails.
    pub answer: Mutex<Option<Addresses>>,
    /// Calls so far.
    pub calls: Mutex<Vec<Instant>>,
    /// The pub each call was for.
    pub pubs: Mutex<Vec<Option<PubIp>>>,
    /// Sources to report as skipped with each answer.
    pub skipped: Mutex<Vec<String>>,
}

impl FakeDiscover {
    pub fn v4(ip: &str) -> Arc<FakeDiscover> {
        let d = FakeDiscover::default();
        d.set_v4(ip);
        Arc::new(d)
    }

    pub fn set_v4(&self, ip: &str) {
        let ip: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        *lock(&self.answer) = Some(Addresses {
            ip: Some(ip),
            ip6: None,
        });
    }
}

impl Discover for FakeDiscover {
    fn discover<'a>(
        &'a self,
        _config: &'a Config,
        pub_ip: Option<&'a PubIp>,
    ) -> BoxFuture<'a, Result<Found, IpError>> {
        lock(&self.calls).push(Instant::now());
        lock(&self.pubs).push(pub_ip.cloned());
        let answer = *lock(&self.answer);
        let skipped = lock(&self.skipped).clone();
        Box::pin(async move {
            answer
                .map(|addrs| Found { addrs, skipped })
                .ok_or(IpError::NoAddress(Vec::new()))
        })
    }
}

/// A scripted answer of the fake pub.
#[derive(Debug, Clone)]
pub enum Script {
    /// Accept (the default when the script is empty).
    Accept,
    /// Fail with this error.
    Fail(UpdateError),
    /// Never answer.
    Hang,
}

/// One update the fake pub received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When.
    pub at: Instant,
    /// Where.
    pub url: Url,
    /// The opened, verified message.
    pub msg: UpdateMsg,
}

/// A pub that opens envelopes with its key and answers from a script.
pub struct FakePub {
    /// The pub's keypair.
    pub keypair: Keypair,
    /// Answers, consumed in order; empty means accept.
    pub script: Mutex<VecDeque<Script>>,
    /// Every update received.
    pub received: Mutex<Vec<Received>>,
    /// What `/names/<label>` answers.
    pub names: Mutex<serde_json::Value>,
    /// The records it serves (what DNS will answer).
    pub served: Mutex<Addresses>,
    /// More identities this fake answers as (a second pub at the same
    /// URL, for the per-pub seq tests).
    pub also: Mutex<Vec<Keypair>>,
    /// What the pub's `200` answers say `seq` is: `None` echoes the
    /// message's (a hostile pub may say anything).
    pub answer_seq: Mutex<Option<u64>>,
}

impl FakePub {
    pub fn new() -> Arc<FakePub> {
        Arc::new(FakePub {
            keypair: Keypair::generate(),
            script: Mutex::new(VecDeque::new()),
            received: Mutex::new(Vec::new()),
            names: Mutex::new(serde_json::json!({"available": true})),
            served: Mutex::new(Addresses::default()),
            answer_seq: Mutex::new(None),
            also: Mutex::new(Vec::new()),
        })
    }

    pub fn push(&self, s: Script) {
        lock(&self.script).push_back(s);
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Seconds after `start` of each update received.
    pub fn times(&self, start: Instant) -> Vec<u64> {
        self.received()
            .iter()
            .map(|r| r.at.duration_since(start).as_secs())
            .collect()
    }
}

impl PubApi for FakePub {
    fn send_update<'a>(
        &'a self,
        url: &'a Url,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Accepted, UpdateError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(envelope)
                .expect("invariant: an envelope (strings and numbers) serialises to JSON");
            let also = lock(&self.also).clone();
            let opened = also
                .iter()
                .find_map(|kp| open_envelope(&body, kp).ok())
                .map_or_else(|| open_envelope(&body, &self.keypair), Ok)
                .map_err(|e| UpdateError::Refused {
                    status: e.code().http_status(),
                    code: e.code(),
                    message: e.to_string(),
                    last_seq: None,
                    max_seq: None,
                    retry_after: None,
                })?;
            let msg = opened.msg;
            lock(&self.received).push(Received {
                at: Instant::now(),
                url: url.clone(),
                msg: msg.clone(),
            });
            let step = lock(&self.script).pop_front().unwrap_or(Script::Accept);
            match step {
                Script::Accept => {
                    *lock(&self.served) = Addresses {
                        ip: msg.ip,
                        ip6: msg.ip6,
                    };
                    Ok(Accepted {
                        fqdn: format!("{}.{}", msg.name, msg.domain),
                        ip: msg.ip,
                        ip6: msg.ip6,
                        ttl: Some(60),
                        changed: true,
                        seq: lock(&self.answer_seq).unwrap_or(msg.seq),
                    })
                }
                Script::Fail(e) => Err(e),
                Script::Hang => {
                    std::future::pending::<()>().await;
                    Err(UpdateError::Unreachable {
                        url: url.to_string(),
                        detail: "never".into(),
                    })
                }
            }
        })
    }

    fn check_name<'a>(
        &'a self,
        _update_url: &'a Url,
        _label: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, UpdateError>> {
        let v = lock(&self.names).clone();
        Box::pin(async move { Ok(v) })
    }
}

/// DNS that serves what the fake pub accepted, after `lag` more queries.
pub struct FakeDns {
    /// The pub whose records are served.
    pub pub_: Arc<FakePub>,
    /// Queries still to answer with nothing.
    pub lag: Mutex<u32>,
    /// Queries so far.
    pub queries: Mutex<u32>,
}

impl DnsCheck for FakeDns {
    fn lookup<'a>(
        &'a self,
        _config: &'a DnsConfig,
        _fqdn: &'a str,
        _domain: &'a str,
        _update_url: &'a Url,
    ) -> BoxFuture<'a, Result<DnsAnswer, DnsError>> {
        *lock(&self.queries) += 1;
        let mut lag = lock(&self.lag);
        let answer = if *lag > 0 {
            *lag -= 1;
            DnsAnswer::default()
        } else {
            let served = *lock(&self.pub_.served);
            DnsAnswer {
                server: Some(std::net::SocketAddr::from((
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    53,
                ))),
                a: served.ip.into_iter().collect(),
                aaaa: served.ip6.into_iter().collect(),
            }
        };
        Box::pin(async move { Ok(answer) })
    }
}

/// A directory with a fixed list and a record of invites.
#[derive(Default)]
pub struct FakeDirectory {
    /// The announcements.
    pub list: Mutex<Vec<Announcement>>,
    /// Invites accepted.
    pub invites: Mutex<Vec<String>>,
}

impl PubDirectory for FakeDirectory {
    fn announcements(&self) -> BoxFuture<'_, Result<Vec<Announcement>, DirectoryError>> {
        let list = lock(&self.list).clone();
        Box::pin(async move { Ok(list) })
    }

    fn accept_invite<'a>(&'a self, invite: &'a str) -> BoxFuture<'a, Result<(), DirectoryError>> {
        Box::pin(async move {
            if invite.contains('~') {
                lock(&self.invites).push(invite.to_string());
                Ok(())
            } else {
                Err(DirectoryError::Invite("not an invite".into()))
            }
        })
    }
}

/// A complete fake world: the pub, discovery, DNS, directory, and the
/// Pi's identity on disk.
pub struct World {
    pub dir: tempfile::TempDir,
    pub pi: Keypair,
    pub pub_: Arc<FakePub>,
    pub discover: Arc<FakeDiscover>,
    pub dns: Arc<FakeDns>,
    pub directory: Arc<FakeDirectory>,
    /// Wall clock in ms, settable.
    pub clock_ms: Arc<Mutex<u64>>,
}

/// The wall clock the fake world starts at (2025-11-24, ms).
pub const START_MS: u64 = 1_764_000_000_000;

impl World {
    pub fn new() -> World {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pi = Keypair::generate();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, pi.to_secret_file()).unwrap_or_else(|e| panic!("secret: {e}"));
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        let pub_ = FakePub::new();
        World {
            dir,
            pi,
            dns: Arc::new(FakeDns {
                pub_: pub_.clone(),
                lag: Mutex::new(0),
                queries: Mutex::new(0),
            }),
            pub_,
            discover: FakeDiscover::v4("24.12.12.12"),
            directory: Arc::new(FakeDirectory::default()),
            clock_ms: Arc::new(Mutex::new(START_MS)),
        }
    }

    /// A config naming the fake pub completely.
    pub fn config(&self) -> Config {
        let text = format!(
            "secret_path = {:?}\nstate_path = {:?}\n[registration]\nname = \"eb4890\"\n\
             pub_id = \"{}\"\nurl = \"http://pub.test/update\"\ndomain = \"peach.dinosaur.is\"\n",
            self.dir.path().join("secret"),
            self.dir.path().join("state.json"),
            self.pub_.keypair.id()
        );
        Config::from_str(&text, std::path::Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("config: {e}"))
    }

    pub fn services(&self) -> Services {
        let clock = self.clock_ms.clone();
        Services {
            discover: self.discover.clone(),
            pub_api: self.pub_.clone(),
            dns: self.dns.clone(),
            directory: self.directory.clone(),
            jitter: Arc::new(|d| d),
            clock: Arc::new(move || *lock(&clock)),
        }
    }

    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(0);
        *lock(&self.clock_ms) += ms;
    }
}
