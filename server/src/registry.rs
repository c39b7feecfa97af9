//! The name registry: an embedded ACID database (SQLite, WAL).
//!
//! name → owner key, addresses, TTL, created/updated, dyndns2 token hash;
//! key → last accepted `seq`. Every write is one transaction, so a crash
//! leaves either the old or the new state, never a mix. The update pipeline
//! commits here only after DNS accepted the change.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use crate::dns::NameRecords;

/// Errors of the registry; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Opening or migrating the database failed.
    #[error("cannot open the registry {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A query or commit failed.
    #[error("registry {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored value could not be read back.
    #[error("registry {path}: corrupt row for {name:?}: {what}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The name or key.
        name: String,
        /// What was wrong.
        what: String,
    },
}

/// One registered name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The label.
    pub name: String,
    /// The owner's SSB id.
    pub owner: String,
    /// The A record.
    pub ip: Option<Ipv4Addr>,
    /// The AAAA record.
    pub ip6: Option<Ipv6Addr>,
    /// TTL in seconds.
    pub ttl: u32,
    /// Hex SHA-256 of the owner's dyndns2 token, if one was registered.
    pub token_sha256: Option<String>,
    /// When the name was first registered (unix ms).
    pub created_ms: u64,
    /// When it last changed (unix ms).
    pub updated_ms: u64,
}

impl Entry {
    /// The DNS records of this entry.
    pub fn records(&self) -> NameRecords {
        NameRecords {
            name: self.name.clone(),
            ip: self.ip,
            ip6: self.ip6,
            ttl: self.ttl,
        }
    }
}

/// The registry.
pub struct Registry {
    /// One connection: SQLite serialises writers anyway, and the server's
    /// writes are short transactions.
    conn: Mutex<Connection>,
    /// For error messages.
    path: PathBuf,
    /// How many names are registered (this process's commits keep it).
    names: AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (
    name         TEXT PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    ip           TEXT,
    ip6          TEXT,
    ttl          INTEGER NOT NULL,
    token_sha256 TEXT,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS names_by_owner ON names(owner);
CREATE TABLE IF NOT EXISTS keys (
    key      TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// `seq` is a u64; SQLite integers are i64. Stored bit for bit and
/// compared in Rust, never in SQL.
fn seq_to_sql(seq: u64) -> i64 {
    seq as i64
}
fn seq_from_sql(v: i64) -> u64 {
    v as u64
}

impl Registry {
    /// Opens (creating if needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let open_err = |source| RegistryError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        Registry::init(conn, path)
    }

    /// A registry in memory (tests, benchmarks of the HTTP path).
    pub fn open_in_memory() -> Result<Registry, RegistryError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| RegistryError::Open {
            path: path.to_owned(),
            source,
        })?;
        Registry::init(conn, path)
    }

    fn init(conn: Connection, path: &Path) -> Result<Registry, RegistryError> {
        let open_err = |source| RegistryError::Open {
            path: path.to_owned(),
            source,
        };
        // WAL: readers never block the writer. synchronous=FULL: a commit
        // returns only after the WAL is on disk, so an answered 200 is not
        // lost even on a power cut (NORMAL survives only a crash of the
        // process). Group commit would buy the fsyncs back; not measured
        // yet (issue 14).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.execute_batch(ACME_SCHEMA).map_err(open_err)?;
        // Counted once here; kept in step by the commits below, so
        // `/health` and `/metrics` never run COUNT(*).
        let names: i64 = conn
            .query_row("SELECT COUNT(*) FROM names", [], |r| r.get(0))
            .map_err(open_err)?;
        Ok(Registry {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            names: AtomicU64::new(names.max(0) as u64),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sql(&self, source: rusqlite::Error) -> RegistryError {
        RegistryError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn row_to_entry(&self, row: &rusqlite::Row<'_>) -> Result<Entry, RegistryError> {
        let get_err = |e| self.sql(e);
        let name: String = row.get(0).map_err(get_err)?;
        let corrupt = |what: String| RegistryError::Corrupt {
            path: self.path.clone(),
            name: name.clone(),
            what,
        };
        let ip: Option<String> = row.get(2).map_err(get_err)?;
        let ip6: Option<String> = row.get(3).map_err(get_err)?;
        let ttl: i64 = row.get(4).map_err(get_err)?;
        let created: i64 = row.get(6).map_err(get_err)?;
        let updated: i64 = row.get(7).map_err(get_err)?;
        Ok(Entry {
            owner: row.get(1).map_err(get_err)?,
            ip: ip
                .map(|s| s.parse().map_err(|_| corrupt(format!("bad ip {s:?}"))))
                .transpose()?,
            ip6: ip6
                .map(|s| s.parse().map_err(|_| corrupt(format!("bad ip6 {s:?}"))))
                .transpose()?,
            ttl: u32::try_from(ttl).map_err(|_| corrupt(format!("bad ttl {ttl}")))?,
            token_sha256: row.get(5).map_err(get_err)?,
            created_ms: created as u64,
            updated_ms: updated as u64,
            name: name.clone(),
        })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Result<Option<Entry>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms \
                 FROM names WHERE name = ?1",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query(params![name]).map_err(|e| self.sql(e))?;
        match rows.next().map_err(|e| self.sql(e))? {
            Some(row) => self.row_to_entry(row).map(Some),
            None => Ok(None),
        }
    }

    /// Every entry, by name.
    pub fn all(&self) -> Result<Vec<Entry>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms \
                 FROM names ORDER BY name",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            out.push(self.row_to_entry(row)?);
        }
        Ok(out)
    }

    /// How many names there are.
    pub fn len(&self) -> Result<u64, RegistryError> {
        Ok(self.names.load(Ordering::Relaxed))
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> Result<bool, RegistryError> {
        self.len().map(|n| n == 0)
    }

    /// The names `owner` holds.
    pub fn names_of(&self, owner: &str) -> Result<Vec<String>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name FROM names WHERE owner = ?1 ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![owner], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.sql(e))
    }

    /// The last `seq` accepted from `key`.
    pub fn last_seq(&self, key: &str) -> Result<Option<u64>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT last_seq FROM keys WHERE key = ?1")
            .map_err(|e| self.sql(e))?;
        let v: Option<i64> = stmt
            .query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(v.map(seq_from_sql))
    }

    /// Stores `entry` (insert or replace, keeping `created_ms` of an existing
    /// row) and the owner's new `seq`, in one transaction.
    pub fn commit_set(&self, entry: &Entry, seq: u64) -> Result<(), RegistryError> {
        self.commit_entry(entry, Some(seq))
    }

    /// Stores `entry` and, when given, the owner's new `seq` (dyndns2
    /// carries none), in one transaction.
    pub fn commit_entry(&self, entry: &Entry, seq: Option<u64>) -> Result<(), RegistryError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let new: bool = tx
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM names WHERE name = ?1)",
                params![entry.name],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO names (name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, ip = excluded.ip, \
             ip6 = excluded.ip6, ttl = excluded.ttl, token_sha256 = excluded.token_sha256, \
             updated_ms = excluded.updated_ms",
            params![
                entry.name,
                entry.owner,
                entry.ip.map(|a| a.to_string()),
                entry.ip6.map(|a| a.to_string()),
                entry.ttl,
                entry.token_sha256,
                entry.created_ms as i64,
                entry.updated_ms as i64,
            ],
        )
        .map_err(|e| self.sql(e))?;
        if let Some(seq) = seq {
            set_seq(&tx, &entry.owner, seq).map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        if new {
            self.names.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Deletes `name` and stores the owner's new `seq`, in one transaction.
    pub fn commit_release(&self, name: &str, owner: &str, seq: u64) -> Result<(), RegistryError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let removed = tx
            .execute(
                "DELETE FROM names WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .map_err(|e| self.sql(e))?;
        set_seq(&tx, owner, seq).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        self.names.fetch_sub(removed as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Stores only a key's new `seq` (a no-change update).
    pub fn commit_seq(&self, owner: &str, seq: u64) -> Result<(), RegistryError> {
        let conn = self.conn();
        set_seq(&conn, owner, seq).map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Forgets a key's last `seq` (the operator's `reset-seq`), so its next
    /// update is accepted with any `seq` within the one-day bound. Returns
    /// the `seq` that was stored.
    pub fn reset_seq(&self, key: &str) -> Result<Option<u64>, RegistryError> {
        let last = self.last_seq(key)?;
        let conn = self.conn();
        conn.execute("DELETE FROM keys WHERE key = ?1", params![key])
            .map_err(|e| self.sql(e))?;
        Ok(last)
    }

    /// Removes a name whoever owns it (the operator's `revoke`).
    pub fn revoke(&self, name: &str) -> Result<Option<Entry>, RegistryError> {
        let entry = self.get(name)?;
        if entry.is_some() {
            let conn = self.conn();
            let removed = conn
                .execute("DELETE FROM names WHERE name = ?1", params![name])
                .map_err(|e| self.sql(e))?;
            self.names.fetch_sub(removed as u64, Ordering::Relaxed);
        }
        Ok(entry)
    }
}

fn set_seq(conn: &Connection, key: &str, seq: u64) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO keys (key, last_seq) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET last_seq = excluded.last_seq",
        params![key, seq_to_sql(seq)],
    )
}

/// The ACME challenges: one row per name with a challenge set, and the
/// names whose challenge DNS may hold without a row (written before the
/// DNS change, removed with the commit after it), so a crash between the
/// two is put right at the next start. A challenge goes with its name: the
/// trigger deletes it in the same transaction that deletes the name
/// (release, revoke).
const ACME_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS acme_challenges (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    txt        TEXT NOT NULL,
    ttl        INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS acme_challenges_by_expiry ON acme_challenges(expires_at);
CREATE TABLE IF NOT EXISTS acme_intents (
    name TEXT PRIMARY KEY NOT NULL
);
CREATE TRIGGER IF NOT EXISTS acme_challenges_follow_names AFTER DELETE ON names
BEGIN
    DELETE FROM acme_challenges WHERE name = OLD.name;
END;
";

/// One name's ACME challenge as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChallenge {
    /// The label.
    pub name: String,
    /// The key that set it (the name's holder).
    pub owner: String,
    /// The TXT values (base64url, so stored space-separated).
    pub txt: Vec<String>,
    /// TTL of the records in seconds.
    pub ttl: u32,
    /// When the values disappear by themselves (unix seconds).
    pub expires_at: u64,
}

impl StoredChallenge {
    /// The DNS records of this challenge.
    pub fn records(&self) -> crate::dns::Challenge {
        crate::dns::Challenge {
            name: self.name.clone(),
            txt: self.txt.clone(),
            ttl: self.ttl,
        }
    }
}

impl Registry {
    fn row_to_challenge(&self, row: &rusqlite::Row<'_>) -> Result<StoredChallenge, RegistryError> {
        let get_err = |e| self.sql(e);
        let name: String = row.get(0).map_err(get_err)?;
        let txt: String = row.get(2).map_err(get_err)?;
        let ttl: i64 = row.get(3).map_err(get_err)?;
        let expires_at: i64 = row.get(4).map_err(get_err)?;
        let corrupt = |what: String| RegistryError::Corrupt {
            path: self.path.clone(),
            name: name.clone(),
            what,
        };
        Ok(StoredChallenge {
            owner: row.get(1).map_err(get_err)?,
            txt: txt.split_whitespace().map(str::to_string).collect(),
            ttl: u32::try_from(ttl).map_err(|_| corrupt(format!("bad challenge ttl {ttl}")))?,
            expires_at: u64::try_from(expires_at)
                .map_err(|_| corrupt(format!("bad challenge expiry {expires_at}")))?,
            name: name.clone(),
        })
    }

    fn query_challenges(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredChallenge>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            out.push(self.row_to_challenge(row)?);
        }
        Ok(out)
    }

    /// The challenge set for `name`, expired or not.
    pub fn challenge(&self, name: &str) -> Result<Option<StoredChallenge>, RegistryError> {
        Ok(self
            .query_challenges(
                "SELECT name, owner, txt, ttl, expires_at FROM acme_challenges WHERE name = ?1",
                params![name],
            )?
            .pop())
    }

    /// Every challenge, by name.
    pub fn challenges(&self) -> Result<Vec<StoredChallenge>, RegistryError> {
        self.query_challenges(
            "SELECT name, owner, txt, ttl, expires_at FROM acme_challenges ORDER BY name",
            [],
        )
    }

    /// The challenges whose expiry is at or before `now` (unix seconds).
    pub fn expired_challenges(&self, now: u64) -> Result<Vec<StoredChallenge>, RegistryError> {
        self.query_challenges(
            "SELECT name, owner, txt, ttl, expires_at FROM acme_challenges \
             WHERE expires_at <= ?1 ORDER BY expires_at",
            params![i64::try_from(now).unwrap_or(i64::MAX)],
        )
    }

    /// Notes that DNS is about to change `name`'s challenge, before it
    /// does (see [`Registry::challenge_intents`]).
    pub fn note_challenge_intent(&self, name: &str) -> Result<(), RegistryError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO acme_intents (name) VALUES (?1)",
            params![name],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Names whose challenge DNS may hold although no commit followed (a
    /// crash or a failed commit between the DNS change and the commit).
    pub fn challenge_intents(&self) -> Result<Vec<String>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name FROM acme_intents ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.sql(e))
    }

    /// Forgets the intent for `name` (DNS was put back in step).
    pub fn clear_challenge_intent(&self, name: &str) -> Result<(), RegistryError> {
        let conn = self.conn();
        conn.execute("DELETE FROM acme_intents WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Stores a challenge and its owner's new `seq`, and forgets the
    /// intent, in one transaction.
    pub fn commit_challenge(
        &self,
        challenge: &StoredChallenge,
        seq: u64,
    ) -> Result<(), RegistryError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO acme_challenges (name, owner, txt, ttl, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, txt = excluded.txt, \
             ttl = excluded.ttl, expires_at = excluded.expires_at",
            params![
                challenge.name,
                challenge.owner,
                challenge.txt.join(" "),
                challenge.ttl,
                i64::try_from(challenge.expires_at).unwrap_or(i64::MAX),
            ],
        )
        .map_err(|e| self.sql(e))?;
        set_seq(&tx, &challenge.owner, seq).map_err(|e| self.sql(e))?;
        tx.execute(
            "DELETE FROM acme_intents WHERE name = ?1",
            params![challenge.name],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Removes `name`'s challenge and forgets the intent, with the owner's
    /// new `seq` when one is given (`acme_clear`; none for the expiry
    /// sweep), in one transaction. With `expires_at`, only a challenge
    /// that still has that expiry is removed (the sweep must not remove
    /// values set again meanwhile). Returns whether a row was removed.
    pub fn commit_challenge_clear(
        &self,
        name: &str,
        owner_seq: Option<(&str, u64)>,
        expires_at: Option<u64>,
    ) -> Result<bool, RegistryError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let removed = match expires_at {
            Some(at) => tx.execute(
                "DELETE FROM acme_challenges WHERE name = ?1 AND expires_at = ?2",
                params![name, i64::try_from(at).unwrap_or(i64::MAX)],
            ),
            None => tx.execute("DELETE FROM acme_challenges WHERE name = ?1", params![name]),
        }
        .map_err(|e| self.sql(e))?;
        if let Some((owner, seq)) = owner_seq {
            set_seq(&tx, owner, seq).map_err(|e| self.sql(e))?;
        }
        tx.execute("DELETE FROM acme_intents WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, owner: &str) -> Entry {
        Entry {
            name: name.into(),
            owner: owner.into(),
            ip: Some(Ipv4Addr::new(24, 12, 12, 12)),
            ip6: None,
            ttl: 60,
            token_sha256: None,
            created_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn set_get_release() {
        let r = Registry::open_in_memory().expect("open");
        assert_eq!(r.get("a").expect("get"), None);
        r.commit_set(&entry("a", "@k"), 5).expect("set");
        assert_eq!(r.get("a").expect("get"), Some(entry("a", "@k")));
        assert_eq!(r.last_seq("@k").expect("seq"), Some(5));
        assert_eq!(r.names_of("@k").expect("names"), vec!["a".to_string()]);
        let mut changed = entry("a", "@k");
        changed.ip6 = Some("2001:db8::1".parse().expect("ip6"));
        changed.created_ms = 99;
        changed.updated_ms = 7;
        r.commit_set(&changed, 6).expect("set");
        let got = r.get("a").expect("get").expect("some");
        assert_eq!(got.created_ms, 1, "created is kept");
        assert_eq!(got.updated_ms, 7);
        assert_eq!(got.ip6, changed.ip6);
        r.commit_release("a", "@k", 7).expect("release");
        assert_eq!(r.get("a").expect("get"), None);
        assert_eq!(r.last_seq("@k").expect("seq"), Some(7));
    }

    #[test]
    fn the_count_follows_every_commit_without_a_query() {
        let r = Registry::open_in_memory().expect("open");
        assert_eq!(r.len().expect("len"), 0);
        r.commit_set(&entry("a", "@k"), 1).expect("set");
        r.commit_set(&entry("a", "@k"), 2).expect("same name again");
        r.commit_entry(&entry("b", "@j"), None).expect("set");
        assert_eq!(r.len().expect("len"), 2);
        r.commit_release("a", "@other", 3)
            .expect("not the owner's: no-op");
        assert_eq!(r.len().expect("len"), 2);
        r.commit_release("a", "@k", 3).expect("release");
        assert_eq!(r.len().expect("len"), 1);
        r.revoke("b").expect("revoke");
        r.revoke("b").expect("again");
        assert_eq!(r.len().expect("len"), 0);
    }

    #[test]
    fn huge_seqs_survive() {
        let r = Registry::open_in_memory().expect("open");
        r.commit_seq("@k", u64::MAX - 1).expect("seq");
        assert_eq!(r.last_seq("@k").expect("seq"), Some(u64::MAX - 1));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite3");
        {
            let r = Registry::open(&path).expect("open");
            r.commit_set(&entry("a", "@k"), 5).expect("set");
        }
        let r = Registry::open(&path).expect("reopen");
        assert_eq!(r.len().expect("len"), 1);
        assert_eq!(
            r.revoke("a").expect("revoke").map(|e| e.owner),
            Some("@k".into())
        );
        assert!(r.is_empty().expect("empty"));
    }

    #[test]
    fn unopenable_path_names_the_file() {
        let err = Registry::open(Path::new("/nonexistent/dir/r.sqlite3"))
            .err()
            .expect("fails");
        assert!(
            err.to_string().contains("/nonexistent/dir/r.sqlite3"),
            "{err}"
        );
    }
}
