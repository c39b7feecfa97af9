//! The operator's control socket: `revoke` and `reset-seq` reach the
//! running server at once, whatever the DNS backend.
//!
//! With the embedded backend the zone lives in the serving process, so a
//! `revoke` that only edited the database (and the command's own copy of
//! the zone) left the name resolving until the next restart, and the
//! owner's next routine update registered it again. The server listens on
//! a unix socket (`control_socket`, mode 0660: root and the service's
//! group); the commands try it first and fall back to the database only
//! when no server is listening.
//!
//! One request per connection: a JSON line `{"revoke":"<label>"}` or
//! `{"reset_seq":"@<key>.ed25519"}`, answered by one JSON line.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::dns::ZoneChange;
use crate::State;

/// The longest request line.
const MAX_LINE: usize = 1024;
/// How long a client may take to send its line, or to read the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Binds the socket at `path` (replacing a stale one no server listens
/// on), readable and writable by owner and group only.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another server is listening", path.display()),
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves requests until `shutdown` resolves.
pub async fn serve(state: Arc<State>, listener: UnixListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(&state, stream).await {
                tracing::debug!(error = %e, "control socket: request failed");
            }
        });
    }
}

async fn answer(state: &State, stream: UnixStream) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take_limited());
    // The deadline is on the client's reading and writing only: a request
    // once read runs to its end (a revoke cut between DNS and the
    // registry would leave them apart).
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line in time"))??;
    let reply = match serde_json::from_str::<Value>(&line) {
        Ok(request) => handle(state, &request).await,
        Err(e) => json!({"ok": false, "error": format!("not a JSON request: {e}")}),
    };
    tokio::time::timeout(DEADLINE, async {
        write.write_all(format!("{reply}\n").as_bytes()).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the answer",
        )
    })?
}

/// A reader that ends after [`MAX_LINE`] bytes.
trait TakeLimited: tokio::io::AsyncRead + Sized {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, MAX_LINE as u64)
    }
}

impl<R: tokio::io::AsyncRead> TakeLimited for R {}

async fn handle(state: &State, request: &Value) -> Value {
    if let Some(name) = request.get("revoke").and_then(Value::as_str) {
        return match revoke(state, name).await {
            Ok(Some(owner)) => json!({"ok": true, "name": name, "owner": owner}),
            Ok(None) => json!({"ok": false, "error": format!("{name:?} is not registered")}),
            Err(e) => json!({"ok": false, "error": e}),
        };
    }
    if let Some(key) = request.get("reset_seq").and_then(Value::as_str) {
        // Under the key's lock, so an update in flight cannot store its
        // seq after the reset.
        let _guards = state.locks.lock(key, key).await;
        return match state.registry.reset_seq(key).await {
            Ok(last) => json!({"ok": true, "key": key, "last_seq": last}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
    }
    json!({"ok": false, "error": "unknown request: use {\"revoke\":…} or {\"reset_seq\":…}"})
}

/// Removes `name` from DNS, then from the registry, under the name's lock
/// like any update; the owner, or `None` if it was not registered.
pub async fn revoke(state: &State, name: &str) -> Result<Option<String>, String> {
    let Some(entry) = state.registry.get(name).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let _guards = state.locks.lock(&entry.owner, name).await;
    state
        .dns
        .apply(&ZoneChange::Remove { name: name.into() })
        .await
        .map_err(|e| format!("DNS refused the removal: {e}"))?;
    crate::acme::clear_for_removal(state, name)
        .await
        .map_err(|e| format!("DNS refused the removal of the ACME challenge: {e}"))?;
    let removed = state
        .registry
        .revoke(name)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%name, owner = %entry.owner, "name revoked by the operator");
    Ok(removed.map(|e| e.owner))
}

/// Sends one request to the server listening at `path`. `Ok(None)` when
/// no server listens there (the caller then works on the database).
pub async fn request(path: &Path, request: &Value) -> io::Result<Option<Value>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        write.write_all(format!("{request}\n").as_bytes()).await?;
        write.shutdown().await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the server did not answer"))?
}
