//! The state file (`/var/lib/peach-dyndns/state.json`): what the daemon
//! must remember across restarts, written atomically.
//!
//! The one value that matters for correctness is the last `seq` signed for
//! each pub (`seqs`): a pub refuses a `seq` that is not above the last it
//! accepted from the key. The daemon reserves a `seq` here *before* it
//! sends it, so a crash between sending and saving can never make it reuse
//! one. It is kept per pub because each pub keeps its own count, and so
//! that one pub's answers can never move the `seq` sent to another. Losing
//! the file is survivable: `seq` falls back to the wall clock in
//! milliseconds.
//!
//! A v1 state file had one `last_seq` for the pub it names in `pub_id`;
//! [`State::migrate_v1`] moves it under that pub when it is believable
//! (within a day of the clock), and otherwise drops it, which is safe
//! because the next `seq` then comes from the clock, and a pub that holds a
//! later one says so with `stale_seq`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use serde::{Deserialize, Serialize};

/// What went wrong reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the JSON this daemon writes.
    #[error("state file {path} is not valid: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The outcome of the last update sent, as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// The pub accepted it.
    pub ok: bool,
    /// The wire error code, or a local one (`unreachable`, `bad_answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Everything in the state file. Unknown fields are ignored so an older
/// daemon can read a newer file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// A v1 file's single `last_seq`: read for [`State::migrate_v1`], never
    /// written again.
    #[serde(default, skip_serializing)]
    pub last_seq: Option<u64>,
    /// Per pub id: the highest `seq` this daemon has signed for that pub
    /// (reserved before sending). Use [`State::seq`] and
    /// [`State::set_seq`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seqs: BTreeMap<String, u64>,
    /// The name the pub last accepted, e.g. `eb4890.peach.dinosaur.is`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The pub that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pub_id: Option<String>,
    /// The label of that name (to release it when the config names
    /// another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// That pub's update URL then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// That pub's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The IPv4 address last accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address last accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// Unix seconds of the last update sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<u64>,
    /// Unix seconds of the last update accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<u64>,
    /// The last update's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<LastResult>,
    /// The pub's DNS answered with the accepted addresses.
    #[serde(default)]
    pub dns_verified: bool,
}

impl State {
    /// The highest `seq` signed for `pub_id`.
    pub fn seq(&self, pub_id: &PublicKey) -> Option<u64> {
        self.seqs.get(&pub_id.to_string()).copied()
    }

    /// Records `seq` as the highest signed for `pub_id`.
    pub fn set_seq(&mut self, pub_id: &PublicKey, seq: u64) {
        self.seqs.insert(pub_id.to_string(), seq);
    }

    /// Moves a v1 file's single `last_seq` under the pub the file names,
    /// when it is believable at `now_ms` (no more than a day ahead);
    /// otherwise drops it. Returns whether anything changed.
    pub fn migrate_v1(&mut self, now_ms: u64) -> bool {
        let Some(old) = self.last_seq.take() else {
            return false;
        };
        let pub_id = self
            .pub_id
            .as_deref()
            .and_then(|p| p.parse::<PublicKey>().ok());
        match pub_id {
            Some(pub_id) if rules::believable_last_seq(old, now_ms) => {
                let seq = self.seq(&pub_id).map_or(old, |s| s.max(old));
                self.set_seq(&pub_id, seq);
                tracing::info!(%pub_id, seq, "moved the v1 state's last_seq under its pub");
            }
            _ => tracing::warn!(
                old,
                "dropping the v1 state's last_seq (no pub, or more than a day ahead); \
                 the next seq comes from the clock"
            ),
        }
        true
    }
}

/// Reads and writes the state file at one path.
#[derive(Debug, Clone)]
pub struct StateStore {
    /// The state file.
    path: PathBuf,
}

impl StateStore {
    /// A store for `path`; nothing is read yet.
    pub fn new(path: impl Into<PathBuf>) -> StateStore {
        StateStore { path: path.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<State, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the state atomically: a temporary file beside it, fsync,
    /// rename over the old one, fsync of the directory.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(state).map_err(|source| StateError::Parse {
            path: self.path.clone(),
            source,
        })?;
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either
/// the old file or the new one, never a mix: write a temporary file in the
/// same directory, fsync it, rename it over `path`, fsync the directory.
/// The new file gets mode 0600 when created (state and config may name
/// paths the owner keeps private); an existing file keeps its mode.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_empty_state_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::new(dir.path().join("state.json"));
        assert_eq!(store.load().expect("load"), State::default());
        let pub_id = peach_dyndns_protocol::identity::Keypair::generate().public();
        let mut state = State {
            fqdn: Some("eb4890.peach.dinosaur.is".into()),
            ip: Some(Ipv4Addr::new(24, 12, 12, 12)),
            dns_verified: true,
            last_result: Some(LastResult {
                ok: false,
                error: Some("rate_limited".into()),
                message: Some("slow down".into()),
            }),
            ..State::default()
        };
        state.set_seq(&pub_id, 1_764_000_000_123);
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), state);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn new_file_is_private_and_existing_mode_is_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_atomically(&path, b"one").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomically(&path, b"two").expect("write");
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
    }

    #[test]
    fn corrupt_file_names_the_path_and_unknown_fields_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").expect("write");
        let err = StateStore::new(&path).load().expect_err("corrupt");
        assert!(err.to_string().contains("state.json"), "{err}");
        std::fs::write(&path, r#"{"last_seq": 5, "from_the_future": true}"#).expect("write");
        assert_eq!(
            StateStore::new(&path).load().expect("load").last_seq,
            Some(5)
        );
    }

    /// A v1 file's one `last_seq` goes under the pub it names; one more
    /// than a day ahead of the clock, or with no pub, is dropped; it is
    /// never written back.
    #[test]
    fn the_v1_last_seq_is_migrated_under_its_pub_or_dropped() {
        let now = 1_764_000_000_000;
        let pub_id = peach_dyndns_protocol::identity::Keypair::generate().public();
        let v1 = |seq: u64, with_pub: bool| {
            let text = if with_pub {
                format!(r#"{{"last_seq": {seq}, "pub_id": "{pub_id}", "fqdn": "a.b.c"}}"#)
            } else {
                format!(r#"{{"last_seq": {seq}}}"#)
            };
            serde_json::from_str::<State>(&text).expect("v1 state")
        };
        let mut s = v1(now - 5, true);
        assert!(s.migrate_v1(now));
        assert_eq!(s.seq(&pub_id), Some(now - 5));
        assert_eq!(s.last_seq, None);
        let json = serde_json::to_value(&s).expect("json");
        assert!(json.get("last_seq").is_none(), "{json}");
        assert_eq!(json["seqs"][pub_id.to_string()], now - 5);
        assert!(!s.migrate_v1(now), "a second migration changes nothing");

        let mut s = v1(u64::MAX - 1, true);
        assert!(s.migrate_v1(now));
        assert_eq!(s.seq(&pub_id), None, "2^64-2 is not believable");
        let mut s = v1(now, false);
        assert!(s.migrate_v1(now));
        assert!(s.seqs.is_empty());
    }

    #[test]
    fn a_write_into_a_missing_directory_fails_with_the_path() {
        let store = StateStore::new("/nonexistent-dir/state.json");
        let err = store.save(&State::default()).expect_err("no dir");
        assert!(
            err.to_string().contains("/nonexistent-dir/state.json"),
            "{err}"
        );
    }
}
