//! The name registry: an embedded ACID database (SQLite, WAL).
//!
//! name → owner key, addresses, TTL, created/updated, dyndns2 token hash;
//! key → last accepted `seq`. Every write is one transaction, so a crash
//! leaves either the old or the new state, never a mix. The update pipeline
//! commits here only after DNS accepted the change.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

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
    /// The writer thread could not make a write durable.
    #[error("registry {path}: {message}")]
    Commit {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
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
///
/// Reads (point lookups by primary key or index, tens of µs) run on the
/// caller's thread on their own connection: in WAL mode a reader never
/// waits for the writer. Writes go to one writer thread that owns the write
/// connection and commits whatever is queued in one transaction (group
/// commit): one fsync (`synchronous=FULL`) makes a whole batch durable, and
/// no async worker ever blocks on it. A commit's [`Commit`] resolves only
/// after its transaction is on disk.
pub struct Registry {
    /// The connection reads use.
    reader: Arc<Mutex<Connection>>,
    /// Jobs for the writer thread (`None` once dropped, to stop it).
    jobs: Option<mpsc::Sender<Queued>>,
    /// The writer thread, joined on drop so the file is closed.
    writer: Option<std::thread::JoinHandle<()>>,
    /// For error messages.
    path: PathBuf,
    /// How many names are registered (the writer keeps it in step).
    names: Arc<AtomicU64>,
    /// Most jobs one transaction takes (see [`Registry::set_max_batch`]).
    max_batch: Arc<AtomicUsize>,
    /// Transactions the writer committed (each one fsync).
    commits: Arc<AtomicU64>,
    /// `seq`s of no-change updates accepted but not yet committed (see
    /// [`Registry::note_seq`]); [`Registry::last_seq`] reads through it.
    noted: Arc<Mutex<HashMap<String, u64>>>,
}

/// Most jobs one transaction takes; the rest wait for the next fsync.
pub const MAX_BATCH: usize = 256;

/// What a job hands back after running inside the batch's transaction:
/// whether it succeeded (else it is rolled back to its savepoint), and what
/// to do once the transaction committed (or failed).
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write. `None`: the batch could not start, fail without running.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

/// A job in the writer's queue. A deferred one has nobody waiting for its
/// fsync: alone in the queue it waits up to [`DEFER`] for company, so a
/// stream of no-change updates costs one fsync per [`DEFER`] (or per
/// [`MAX_BATCH`]), not one per batch of whoever happened to be in flight.
/// While it waits the writer is parked, not blocked on the queue, so more
/// deferred jobs queue without waking it; an awaited job unparks it.
struct Queued {
    job: Job,
    deferred: bool,
}

/// How long a deferred write waits for the next commit. It bounds what a
/// crash can lose: the `seq`s of the no-change updates of the last
/// `DEFER`, which is harmless (see [`Registry::note_seq`]).
pub const DEFER: Duration = Duration::from_millis(100);

/// A write handed to the writer thread: `.await` it, or [`Commit::wait`]
/// outside an async runtime. It resolves after the commit is durable.
#[must_use = "a commit is only known to be durable once awaited"]
pub struct Commit<T> {
    rx: oneshot::Receiver<Result<T, RegistryError>>,
    path: PathBuf,
}

impl<T> Commit<T> {
    fn closed(path: PathBuf) -> RegistryError {
        RegistryError::Commit {
            path,
            message: "the registry's writer thread has stopped".into(),
        }
    }

    /// Blocks until the commit is durable (for callers outside an async
    /// runtime: the CLI, benchmarks). Panics inside a runtime, as
    /// `blocking_recv` does.
    pub fn wait(self) -> Result<T, RegistryError> {
        let path = self.path;
        self.rx
            .blocking_recv()
            .unwrap_or_else(|_| Err(Self::closed(path)))
    }
}

impl<T> Future for Commit<T> {
    type Output = Result<T, RegistryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(Self::closed(self.path.clone()))))
    }
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
-- New names about to be written to DNS (see Registry::mark_pending).
CREATE TABLE IF NOT EXISTS pending (
    name TEXT PRIMARY KEY NOT NULL
);
CREATE TABLE IF NOT EXISTS lapses (
    owner        TEXT PRIMARY KEY NOT NULL,
    since_ms     INTEGER NOT NULL,
    blocked      INTEGER NOT NULL,
    suspended_ms INTEGER
);
PRAGMA user_version = 2;
";

/// A key that holds names here and that the pub no longer follows, or
/// blocks: its names stop resolving after a grace and are freed after a
/// second one (see `sweep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lapse {
    /// The owner's SSB id.
    pub owner: String,
    /// When the server first saw the key unfollowed or blocked (unix ms).
    pub since_ms: u64,
    /// Blocked (rather than only no longer followed).
    pub blocked: bool,
    /// When its names stopped resolving (unix ms), if they have.
    pub suspended_ms: Option<u64>,
}

/// `seq` is a u64; SQLite integers are i64. Stored bit for bit and
/// compared in Rust, never in SQL.
fn seq_to_sql(seq: u64) -> i64 {
    seq as i64
}
fn seq_from_sql(v: i64) -> u64 {
    v as u64
}

/// WAL: readers never block the writer. synchronous=FULL: a commit
/// returns only after the WAL is on disk, so an answered 200 is not lost
/// even on a power cut (NORMAL survives only a crash of the process); the
/// writer's group commit shares one fsync among all queued writes.
fn prepare(conn: &Connection, path: &Path) -> Result<(), RegistryError> {
    let open_err = |source| RegistryError::Open {
        path: path.to_owned(),
        source,
    };
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    conn.execute_batch(SCHEMA).map_err(open_err)?;
    conn.execute_batch(ACME_SCHEMA).map_err(open_err)
}

fn lock_noted(noted: &Mutex<HashMap<String, u64>>) -> MutexGuard<'_, HashMap<String, u64>> {
    // Only inserts and removes of whole values: usable after a panic.
    noted.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite half-written
    // (transactions roll back), so a poisoned lock is still usable.
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Opens (creating if needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let open_err = |source| RegistryError::Open {
            path: path.to_owned(),
            source,
        };
        let writer = Connection::open(path).map_err(open_err)?;
        prepare(&writer, path)?;
        let reader = Connection::open(path).map_err(open_err)?;
        prepare(&reader, path)?;
        Registry::start(
            Arc::new(Mutex::new(reader)),
            Arc::new(Mutex::new(writer)),
            path,
        )
    }

    /// A registry in memory (tests, benchmarks of the HTTP path). Reads and
    /// the writer thread share its one connection.
    pub fn open_in_memory() -> Result<Registry, RegistryError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| RegistryError::Open {
            path: path.to_owned(),
            source,
        })?;
        prepare(&conn, path)?;
        let shared = Arc::new(Mutex::new(conn));
        Registry::start(shared.clone(), shared, path)
    }

    fn start(
        reader: Arc<Mutex<Connection>>,
        write_conn: Arc<Mutex<Connection>>,
        path: &Path,
    ) -> Result<Registry, RegistryError> {
        // Counted once here; kept in step by the writer, so `/health` and
        // `/metrics` never run COUNT(*).
        let names: i64 = lock(&reader)
            .query_row("SELECT COUNT(*) FROM names", [], |r| r.get(0))
            .map_err(|source| RegistryError::Open {
                path: path.to_owned(),
                source,
            })?;
        let (jobs, rx) = mpsc::channel::<Queued>();
        let max_batch = Arc::new(AtomicUsize::new(MAX_BATCH));
        let commits = Arc::new(AtomicU64::new(0));
        let (batch, committed) = (Arc::clone(&max_batch), Arc::clone(&commits));
        let writer = std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || write_batches(&write_conn, &rx, &batch, &committed))
            .map_err(|e| RegistryError::Commit {
                path: path.to_owned(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Registry {
            reader,
            jobs: Some(jobs),
            writer: Some(writer),
            path: path.to_owned(),
            names: Arc::new(AtomicU64::new(names.max(0) as u64)),
            max_batch,
            commits,
            noted: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Transactions the writer thread has committed so far: one fsync
    /// each, however many writes they carried.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// An internal knob, not in the config: the most writes one
    /// transaction (one fsync) takes, [`MAX_BATCH`] unless set. `1` is
    /// plain per-request `synchronous=FULL`, one commit and fsync per
    /// write, which the benchmark measures against the group commit in
    /// the same run. Takes effect from the next batch.
    pub fn set_max_batch(&self, n: usize) {
        self.max_batch.store(n.max(1), Ordering::Relaxed);
    }

    /// The read connection. Rare operator writes may use it too (SQLite
    /// serialises them with the writer thread's transactions).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.reader)
    }

    fn sql(&self, source: rusqlite::Error) -> RegistryError {
        RegistryError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Hands `op` to the writer thread. `op` runs inside the batch's
    /// transaction and returns its value and how it changed the number of
    /// names; the value is delivered once the transaction is durable.
    fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<(T, i64)> + Send + 'static,
    ) -> Commit<T> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(op, false, move |result| {
            let _ = tx.send(result);
        });
        Commit {
            rx,
            path: self.path.clone(),
        }
    }

    /// Queues `op` for the writer; `deliver` gets its value once the
    /// transaction is durable, or the error. A `deferred` op has nobody
    /// waiting (see [`Queued`]); any other ends a wait for company.
    fn enqueue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<(T, i64)> + Send + 'static,
        deferred: bool,
        deliver: impl FnOnce(Result<T, RegistryError>) + Send + 'static,
    ) {
        let path = self.path.clone();
        let names = self.names.clone();
        let job: Job = Box::new(move |conn| {
            let failed = |path: PathBuf, message: String| RegistryError::Commit { path, message };
            let Some(conn) = conn else {
                let finish: Finish = Box::new(move |r| {
                    let message = r.err().unwrap_or_else(|| "the batch did not start".into());
                    deliver(Err(failed(path, message)));
                });
                return (false, finish);
            };
            match op(conn) {
                Ok((value, delta)) => {
                    let finish: Finish = Box::new(move |committed| {
                        deliver(match committed {
                            Ok(()) => {
                                if delta >= 0 {
                                    names.fetch_add(delta as u64, Ordering::Relaxed);
                                } else {
                                    names.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
                                }
                                Ok(value)
                            }
                            Err(message) => Err(failed(path, message)),
                        });
                    });
                    (true, finish)
                }
                Err(source) => {
                    let finish: Finish = Box::new(move |_| {
                        deliver(Err(RegistryError::Sql { path, source }));
                    });
                    (false, finish)
                }
            }
        });
        let Some(jobs) = &self.jobs else { return };
        // A send fails only when the thread is gone; `deliver` is then
        // dropped unsent, which a waiting `Commit` reports.
        let _ = jobs.send(Queued { job, deferred });
        if !deferred {
            if let Some(writer) = &self.writer {
                writer.thread().unpark();
            }
        }
    }

    fn row_to_entry(&self, row: &rusqlite::Row<'_>) -> Result<Entry, RegistryError> {
        entry_of(row, &self.path)
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

    /// The last `seq` accepted from `key`: committed, or noted by
    /// [`Registry::note_seq`] and not committed yet.
    pub fn last_seq(&self, key: &str) -> Result<Option<u64>, RegistryError> {
        let noted = lock_noted(&self.noted).get(key).copied();
        let stored = stored_seq(&self.conn(), key).map_err(|e| self.sql(e))?;
        Ok(stored.max(noted))
    }

    /// Up to `limit` entries with names after `after`, by name: the
    /// start-up re-apply reads the registry in such pages, so its memory
    /// does not grow with the number of names.
    pub fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Entry>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms \
                 FROM names WHERE name > ?1 ORDER BY name LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt
            .query(params![after.unwrap_or(""), limit])
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::with_capacity(limit as usize);
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            out.push(self.row_to_entry(row)?);
        }
        Ok(out)
    }

    /// Stores `entry` (insert or replace, keeping `created_ms` of an existing
    /// row) and the owner's new `seq`, in one transaction.
    pub fn commit_set(&self, entry: &Entry, seq: u64) -> Commit<()> {
        self.commit_entry(entry, Some(seq))
    }

    /// Stores `entry` and, when given, the owner's new `seq` (dyndns2
    /// carries none), in one transaction.
    pub fn commit_entry(&self, entry: &Entry, seq: Option<u64>) -> Commit<()> {
        let entry = entry.clone();
        self.submit(move |conn| {
            let new: bool = conn.query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM names WHERE name = ?1)",
                params![entry.name],
                |r| r.get(0),
            )?;
            conn.prepare_cached(
                "INSERT INTO names (name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, ip = excluded.ip, \
                 ip6 = excluded.ip6, ttl = excluded.ttl, token_sha256 = excluded.token_sha256, \
                 updated_ms = excluded.updated_ms",
            )?
            .execute(params![
                entry.name,
                entry.owner,
                entry.ip.map(|a| a.to_string()),
                entry.ip6.map(|a| a.to_string()),
                entry.ttl,
                entry.token_sha256,
                entry.created_ms as i64,
                entry.updated_ms as i64,
            ])?;
            if let Some(seq) = seq {
                set_seq(conn, &entry.owner, seq)?;
            }
            if new {
                conn.prepare_cached("DELETE FROM pending WHERE name = ?1")?
                    .execute(params![entry.name])?;
            }
            Ok(((), i64::from(new)))
        })
    }

    /// Notes, durably, that a name the registry does not hold is about to
    /// be written to DNS. A crash between that write and the commit would
    /// otherwise leave a record nobody knows of (BIND keeps it; the
    /// start-up re-apply only sets what the registry holds); the commit
    /// ([`commit_entry`](Self::commit_entry)) clears the note, and the
    /// next start removes the DNS records of the names still noted
    /// ([`pending_orphans`](Self::pending_orphans)).
    pub fn mark_pending(&self, name: &str) -> Commit<()> {
        let name = name.to_owned();
        self.submit(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO pending (name) VALUES (?1)")?
                .execute(params![name])?;
            Ok(((), 0))
        })
    }

    /// Names noted by [`mark_pending`](Self::mark_pending) that were never
    /// committed: DNS may hold records of them that must go.
    pub fn pending_orphans(&self) -> Result<Vec<String>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name FROM pending WHERE name NOT IN (SELECT name FROM names) ORDER BY name",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.sql(e))
    }

    /// Forgets every note of [`mark_pending`](Self::mark_pending) (once
    /// the orphans' records are removed from DNS).
    pub fn clear_pending(&self) -> Commit<()> {
        self.submit(|conn| {
            conn.execute("DELETE FROM pending", [])?;
            Ok(((), 0))
        })
    }

    /// Deletes `name` and stores the owner's new `seq`, in one transaction.
    pub fn commit_release(&self, name: &str, owner: &str, seq: u64) -> Commit<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.submit(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM names WHERE name = ?1 AND owner = ?2")?
                .execute(params![name, owner])?;
            set_seq(conn, &owner, seq)?;
            Ok(((), -(removed as i64)))
        })
    }

    /// Stores only a key's new `seq` (a no-change update).
    pub fn commit_seq(&self, owner: &str, seq: u64) -> Commit<()> {
        let owner = owner.to_owned();
        self.submit(move |conn| {
            set_seq(conn, &owner, seq)?;
            Ok(((), 0))
        })
    }

    /// A no-change update's `seq`, which the caller answers at once: it is
    /// the key's last `seq` from now on ([`Registry::last_seq`] reads it
    /// from memory), and the writer stores it with the next commit, at
    /// most [`DEFER`] later, without anyone waiting for that fsync.
    ///
    /// Why a crash before that commit is harmless: the writer commits in
    /// queue order, so if this `seq` is lost, so is every write queued
    /// after it. The registry then holds exactly the records this update
    /// confirmed (it changed none), and a replay of it changes nothing;
    /// any `seq` the key sends later is still above the stored one. What
    /// is lost is only that a replay of the last `DEFER`'s no-change
    /// updates is answered 200 instead of `stale_seq`, once, after a crash.
    pub fn note_seq(&self, owner: &str, seq: u64) {
        {
            let mut noted = lock_noted(&self.noted);
            let slot = noted.entry(owner.to_owned()).or_insert(seq);
            *slot = (*slot).max(seq);
        }
        let key = owner.to_owned();
        let noted = Arc::clone(&self.noted);
        self.enqueue(
            // Only upwards: a signed ACME op of the key may have stored a
            // higher `seq` on the other connection meanwhile.
            {
                let key = key.clone();
                move |conn| raise_seq(conn, &key, seq).map(|()| ((), 0))
            },
            true,
            move |stored| match stored {
                Ok(()) => {
                    // Committed: the table holds it now, unless a later
                    // `seq` of the key was noted meanwhile.
                    let mut noted = lock_noted(&noted);
                    if noted.get(&key) == Some(&seq) {
                        noted.remove(&key);
                    }
                }
                // Kept in memory, so replays stay refused while the server
                // runs; the next commit of the key stores it.
                Err(e) => tracing::error!(
                    key = %key, seq, error = %e,
                    "registry: a no-change update's seq could not be stored"
                ),
            },
        );
    }

    /// Resolves once everything queued before it, deferred writes too, is
    /// on disk (a clean stop calls it before it exits).
    pub fn sync(&self) -> Commit<()> {
        self.submit(|_| Ok(((), 0)))
    }

    /// Forgets a key's last `seq` (the operator's `reset-seq`), so its next
    /// update is accepted with any `seq` within the one-day bound. Resolves
    /// to the `seq` that was stored.
    pub fn reset_seq(&self, key: &str) -> Commit<Option<u64>> {
        lock_noted(&self.noted).remove(key);
        let key = key.to_owned();
        self.submit(move |conn| {
            let last = stored_seq(conn, &key)?;
            conn.execute("DELETE FROM keys WHERE key = ?1", params![key])?;
            Ok((last, 0))
        })
    }

    /// Removes a name whoever owns it (the operator's `revoke`); resolves
    /// to the entry that was removed.
    pub fn revoke(&self, name: &str) -> Commit<Option<Entry>> {
        let name = name.to_owned();
        let path = self.path.clone();
        self.submit(move |conn| {
            let entry = {
                let mut stmt = conn.prepare_cached(
                    "SELECT name, owner, ip, ip6, ttl, token_sha256, created_ms, updated_ms \
                     FROM names WHERE name = ?1",
                )?;
                let mut rows = stmt.query(params![name])?;
                match rows.next()? {
                    Some(row) => Some(
                        entry_of(row, &path)
                            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                    ),
                    None => None,
                }
            };
            let removed = conn.execute("DELETE FROM names WHERE name = ?1", params![name])?;
            Ok((entry, -(removed as i64)))
        })
    }
}

impl Registry {
    /// The lapse recorded for `owner`, if any.
    pub fn lapse(&self, owner: &str) -> Result<Option<Lapse>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT owner, since_ms, blocked, suspended_ms FROM lapses WHERE owner = ?1",
            )
            .map_err(|e| self.sql(e))?;
        stmt.query_row(params![owner], lapse_of)
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every recorded lapse, by owner.
    pub fn lapses(&self) -> Result<Vec<Lapse>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT owner, since_ms, blocked, suspended_ms FROM lapses ORDER BY owner",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], lapse_of).map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Up to `limit` distinct owners after `after`, by id (the sweep walks
    /// them in such pages).
    pub fn owners_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, RegistryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT owner FROM names WHERE owner > ?1 ORDER BY owner LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Records that `owner` is no longer followed (or is blocked) as of
    /// `now_ms`, keeping an earlier `since` (a block found later keeps the
    /// time of the unfollow, but is marked blocked). Resolves to the lapse
    /// as stored.
    pub fn note_lapse(&self, owner: &str, blocked: bool, now_ms: u64) -> Commit<Lapse> {
        let owner = owner.to_owned();
        self.submit(move |conn| {
            conn.prepare_cached(
                "INSERT INTO lapses (owner, since_ms, blocked, suspended_ms) \
                 VALUES (?1, ?2, ?3, NULL) \
                 ON CONFLICT(owner) DO UPDATE SET blocked = excluded.blocked",
            )?
            .execute(params![owner, now_ms as i64, blocked])?;
            let lapse = conn.query_row(
                "SELECT owner, since_ms, blocked, suspended_ms FROM lapses WHERE owner = ?1",
                params![owner],
                lapse_of,
            )?;
            Ok((lapse, 0))
        })
    }

    /// Forgets `owner`'s lapse (the pub follows it again).
    pub fn clear_lapse(&self, owner: &str) -> Commit<()> {
        let owner = owner.to_owned();
        self.submit(move |conn| {
            conn.prepare_cached("DELETE FROM lapses WHERE owner = ?1")?
                .execute(params![owner])?;
            Ok(((), 0))
        })
    }

    /// Marks `owner`'s lapse suspended at `now_ms` and clears the addresses
    /// of its names (they keep their owner until freed; the owner's next
    /// accepted update sets them again). Resolves to those names.
    pub fn suspend(&self, owner: &str, now_ms: u64) -> Commit<Vec<String>> {
        let owner = owner.to_owned();
        self.submit(move |conn| {
            conn.prepare_cached("UPDATE lapses SET suspended_ms = ?2 WHERE owner = ?1")?
                .execute(params![owner, now_ms as i64])?;
            let names = owned(conn, &owner)?;
            conn.prepare_cached(
                "UPDATE names SET ip = NULL, ip6 = NULL, updated_ms = ?2 WHERE owner = ?1",
            )?
            .execute(params![owner, now_ms as i64])?;
            Ok((names, 0))
        })
    }

    /// Frees every name of `owner` and forgets its lapse. Resolves to the
    /// names freed.
    pub fn free(&self, owner: &str) -> Commit<Vec<String>> {
        let owner = owner.to_owned();
        self.submit(move |conn| {
            let names = owned(conn, &owner)?;
            let removed = conn
                .prepare_cached("DELETE FROM names WHERE owner = ?1")?
                .execute(params![owner])?;
            conn.prepare_cached("DELETE FROM lapses WHERE owner = ?1")?
                .execute(params![owner])?;
            Ok((names, -(removed as i64)))
        })
    }
}

fn owned(conn: &Connection, owner: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM names WHERE owner = ?1 ORDER BY name")?;
    let rows = stmt.query_map(params![owner], |r| r.get(0))?;
    rows.collect()
}

fn lapse_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lapse> {
    let since: i64 = row.get(1)?;
    let suspended: Option<i64> = row.get(3)?;
    Ok(Lapse {
        owner: row.get(0)?,
        since_ms: since as u64,
        blocked: row.get(2)?,
        suspended_ms: suspended.map(|v| v as u64),
    })
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the jobs already queued.
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

/// The writer thread: takes whatever is queued (up to `max_batch`,
/// [`MAX_BATCH`] unless [`Registry::set_max_batch`] said otherwise), runs
/// each job under its own savepoint inside one transaction, commits once,
/// then tells every job how the commit went.
fn write_batches(
    conn: &Mutex<Connection>,
    rx: &mpsc::Receiver<Queued>,
    max_batch: &AtomicUsize,
    commits: &AtomicU64,
) {
    while let Ok(first) = rx.recv() {
        let max = max_batch.load(Ordering::Relaxed);
        // Only deferred writes so far: wait for company until this.
        let until = Instant::now() + DEFER;
        let mut waiting = first.deferred;
        let mut jobs = vec![first.job];
        loop {
            let mut closed = false;
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(next) => {
                        waiting &= next.deferred;
                        jobs.push(next.job);
                    }
                    Err(e) => {
                        closed = e == mpsc::TryRecvError::Disconnected;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if !waiting || closed || jobs.len() >= max || now >= until {
                break;
            }
            // Parked, not blocked on the queue: deferred jobs sent now do
            // not wake the writer; an awaited one unparks it (`submit`).
            std::thread::park_timeout(until - now);
        }
        let conn = lock(conn);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let message = format!("cannot begin a transaction: {e}");
            for job in jobs {
                let (_, finish) = job(None);
                finish(Err(message.clone()));
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                let (_, finish) = job(None);
                finish(Err(format!("cannot open a savepoint: {e}")));
                continue;
            }
            let (ok, finish) = job(Some(&conn));
            let closed = if ok {
                conn.execute_batch("RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = closed {
                tracing::error!(error = %e, "registry: closing a savepoint failed");
            }
            finishes.push((ok, finish));
        }
        let committed = conn
            .execute_batch("COMMIT")
            .map_err(|e| format!("the commit failed: {e}"));
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        } else {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        drop(conn);
        for (ran, finish) in finishes {
            // A job that failed already carries its own error.
            finish(if ran { committed.clone() } else { Ok(()) });
        }
    }
}

fn entry_of(row: &rusqlite::Row<'_>, path: &Path) -> Result<Entry, RegistryError> {
    let get_err = |e| RegistryError::Sql {
        path: path.to_owned(),
        source: e,
    };
    let name: String = row.get(0).map_err(get_err)?;
    let corrupt = |what: String| RegistryError::Corrupt {
        path: path.to_owned(),
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

/// The `seq` stored for `key`.
fn stored_seq(conn: &Connection, key: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT last_seq FROM keys WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map(|v| v.map(seq_from_sql))
}

/// Stores `seq` unless the key's stored one is at or above it.
fn raise_seq(conn: &Connection, key: &str, seq: u64) -> rusqlite::Result<()> {
    if stored_seq(conn, key)?.map_or(true, |stored| stored < seq) {
        set_seq(conn, key, seq)?;
    }
    Ok(())
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

    /// Stores a challenge and its owner's new `seq` (none for the server's
    /// own challenge), and forgets the intent, in one transaction.
    pub fn commit_challenge(
        &self,
        challenge: &StoredChallenge,
        seq: Option<u64>,
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
        if let Some(seq) = seq {
            set_seq(&tx, &challenge.owner, seq).map_err(|e| self.sql(e))?;
        }
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
        r.commit_set(&entry("a", "@k"), 5).wait().expect("set");
        assert_eq!(r.get("a").expect("get"), Some(entry("a", "@k")));
        assert_eq!(r.last_seq("@k").expect("seq"), Some(5));
        assert_eq!(r.names_of("@k").expect("names"), vec!["a".to_string()]);
        let mut changed = entry("a", "@k");
        changed.ip6 = Some("2001:db8::1".parse().expect("ip6"));
        changed.created_ms = 99;
        changed.updated_ms = 7;
        r.commit_set(&changed, 6).wait().expect("set");
        let got = r.get("a").expect("get").expect("some");
        assert_eq!(got.created_ms, 1, "created is kept");
        assert_eq!(got.updated_ms, 7);
        assert_eq!(got.ip6, changed.ip6);
        r.commit_release("a", "@k", 7).wait().expect("release");
        assert_eq!(r.get("a").expect("get"), None);
        assert_eq!(r.last_seq("@k").expect("seq"), Some(7));
    }

    #[test]
    fn the_count_follows_every_commit_without_a_query() {
        let r = Registry::open_in_memory().expect("open");
        assert_eq!(r.len().expect("len"), 0);
        r.commit_set(&entry("a", "@k"), 1).wait().expect("set");
        r.commit_set(&entry("a", "@k"), 2)
            .wait()
            .expect("same name again");
        r.commit_entry(&entry("b", "@j"), None).wait().expect("set");
        assert_eq!(r.len().expect("len"), 2);
        r.commit_release("a", "@other", 3)
            .wait()
            .expect("not the owner's: no-op");
        assert_eq!(r.len().expect("len"), 2);
        r.commit_release("a", "@k", 3).wait().expect("release");
        assert_eq!(r.len().expect("len"), 1);
        r.revoke("b").wait().expect("revoke");
        r.revoke("b").wait().expect("again");
        assert_eq!(r.len().expect("len"), 0);
    }

    #[test]
    fn a_noted_seq_counts_at_once_and_lands_with_the_next_commit() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite3");
        let r = Registry::open(&path).expect("open");
        r.commit_set(&entry("a", "@k"), 5).wait().expect("set");
        r.note_seq("@k", 6);
        assert_eq!(
            r.last_seq("@k").expect("seq"),
            Some(6),
            "seen before the commit"
        );
        // A higher seq stored meanwhile on the other connection (a signed
        // ACME op) is not lowered by the deferred write.
        r.commit_challenge_clear("a", Some(("@k", 9)), None)
            .expect("clear");
        r.commit_seq("@other", 1)
            .wait()
            .expect("a commit that is awaited");
        assert_eq!(r.last_seq("@k").expect("seq"), Some(9));
        assert!(lock_noted(&r.noted).is_empty(), "forgotten once committed");
        // A noted seq alone is committed within DEFER, without a waiter.
        r.note_seq("@k", 10);
        let before = r.commits();
        std::thread::sleep(DEFER * 3);
        assert_eq!(r.commits(), before + 1);
        // reset-seq forgets a noted seq too.
        r.note_seq("@k", 11);
        assert_eq!(r.reset_seq("@k").wait().expect("reset"), Some(11));
        assert_eq!(r.last_seq("@k").expect("seq"), None);
        r.note_seq("@k", 12);
        drop(r);
        // Dropping the registry commits what was deferred.
        let r = Registry::open(&path).expect("reopen");
        assert_eq!(r.last_seq("@k").expect("seq"), Some(12));
    }

    #[test]
    fn huge_seqs_survive() {
        let r = Registry::open_in_memory().expect("open");
        r.commit_seq("@k", u64::MAX - 1).wait().expect("seq");
        assert_eq!(r.last_seq("@k").expect("seq"), Some(u64::MAX - 1));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite3");
        {
            let r = Registry::open(&path).expect("open");
            r.commit_set(&entry("a", "@k"), 5).wait().expect("set");
        }
        let r = Registry::open(&path).expect("reopen");
        assert_eq!(r.len().expect("len"), 1);
        assert_eq!(
            r.revoke("a").wait().expect("revoke").map(|e| e.owner),
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

    #[test]
    fn pages_walk_every_name_once() {
        let r = Registry::open_in_memory().expect("open");
        for i in 0..25 {
            r.commit_set(&entry(&format!("n{i:02}"), "@k"), i + 1)
                .wait()
                .expect("set");
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = r.page(after.as_deref(), 10).expect("page");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 10);
            after = page.last().map(|e| e.name.clone());
            seen.extend(page.into_iter().map(|e| e.name));
        }
        let all: Vec<String> = r.all().expect("all").into_iter().map(|e| e.name).collect();
        assert_eq!(seen, all);
        assert_eq!(seen.len(), 25);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_transactions_and_all_land() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite3");
        let r = Arc::new(Registry::open(&path).expect("open"));
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.commit_set(&entry(&format!("n{i}"), &format!("@k{i}")), i + 1)
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("commit");
        }
        assert_eq!(r.len().expect("len"), 200);
        drop(r);
        // Every answered commit is in the file, read by a fresh process view.
        let again = Registry::open(&path).expect("reopen");
        assert_eq!(again.len().expect("len"), 200);
        assert_eq!(again.last_seq("@k199").expect("seq"), Some(200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_commit_per_write_when_the_batch_is_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite3");
        let r = Arc::new(Registry::open(&path).expect("open"));
        r.set_max_batch(1);
        let before = r.commits();
        // Queued all before any is awaited: a group commit could take
        // them together; with a batch of one each gets its own.
        let queued: Vec<_> = (0..20u64)
            .map(|i| r.commit_set(&entry(&format!("n{i}"), &format!("@k{i}")), i + 1))
            .collect();
        for c in queued {
            c.await.expect("commit");
        }
        assert_eq!(r.commits() - before, 20);
        assert_eq!(r.len().expect("len"), 20);
    }

    #[test]
    fn a_failing_job_does_not_undo_the_others_in_its_batch() {
        let r = Registry::open_in_memory().expect("open");
        // Queue a good write, a failing one and another good one before
        // waiting, so they can share one transaction.
        let a = r.commit_set(&entry("a", "@k"), 1);
        let bad = r.submit(|conn| {
            conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(((), 0))
        });
        let b = r.commit_set(&entry("b", "@j"), 1);
        a.wait().expect("a");
        assert!(bad.wait().is_err(), "the bad job reports its error");
        b.wait().expect("b");
        assert_eq!(r.len().expect("len"), 2);
        assert!(r.get("a").expect("get").is_some());
        assert!(r.get("b").expect("get").is_some());
    }

    #[test]
    fn a_lapse_suspends_then_frees_and_a_follow_clears_it() {
        let r = Registry::open_in_memory().expect("open");
        r.commit_set(&entry("a", "@k"), 1).wait().expect("set");
        r.commit_set(&entry("b", "@j"), 1).wait().expect("set");
        let lapse = r.note_lapse("@k", false, 100).wait().expect("note");
        assert_eq!(
            (lapse.since_ms, lapse.blocked, lapse.suspended_ms),
            (100, false, None)
        );
        // Seen again later, now blocked: the first time is kept.
        let lapse = r.note_lapse("@k", true, 200).wait().expect("note");
        assert_eq!((lapse.since_ms, lapse.blocked), (100, true));
        assert_eq!(
            r.suspend("@k", 300).wait().expect("suspend"),
            vec!["a".to_string()]
        );
        let a = r.get("a").expect("get").expect("still held");
        assert_eq!((a.ip, a.ip6, a.owner.as_str()), (None, None, "@k"));
        assert_eq!(
            r.lapse("@k").expect("lapse").and_then(|l| l.suspended_ms),
            Some(300)
        );
        assert_eq!(
            r.owners_page(None, 10).expect("owners"),
            vec!["@j".to_string(), "@k".to_string()]
        );
        assert_eq!(r.free("@k").wait().expect("free"), vec!["a".to_string()]);
        assert_eq!(r.get("a").expect("get"), None);
        assert_eq!(r.lapse("@k").expect("lapse"), None);
        assert_eq!(r.len().expect("len"), 1);
        r.note_lapse("@j", false, 1).wait().expect("note");
        r.clear_lapse("@j").wait().expect("clear");
        assert!(r.lapses().expect("lapses").is_empty());
        assert!(r.get("b").expect("get").is_some_and(|b| b.ip.is_some()));
    }

    #[test]
    fn a_pending_name_is_an_orphan_until_committed() {
        let r = Registry::open_in_memory().expect("open");
        r.mark_pending("a").wait().expect("mark");
        r.mark_pending("b").wait().expect("mark");
        r.mark_pending("b").wait().expect("twice is once");
        assert_eq!(r.pending_orphans().expect("list"), ["a", "b"]);
        r.commit_entry(&entry("b", "@k.ed25519"), Some(1))
            .wait()
            .expect("commit");
        assert_eq!(
            r.pending_orphans().expect("list"),
            ["a"],
            "the commit clears b"
        );
        r.clear_pending().wait().expect("clear");
        assert!(r.pending_orphans().expect("list").is_empty());
        assert_eq!(r.len().expect("len"), 1);
    }
}
