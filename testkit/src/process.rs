//! Child processes: long-running parts in their own process group with their
//! output in a log file, stopped by PID (the harness's own parts, and
//! [`Process`] for a benchmark's); short commands with a time limit;
//! finding programs.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How long a part gets to exit after SIGTERM before it gets SIGKILL. named
/// and ssb-server both stop in well under a second when healthy.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the harness looks at a child or a readiness probe while waiting:
/// short, since named answers about 25 ms after start.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How many log lines go into an error message: enough for named's or
/// node's reason to fail, short enough to read.
const LOG_TAIL_LINES: usize = 40;

/// A long-running part (named, ssb-server) started by the harness.
///
/// It runs in a process group of its own (`process_group(0)`), so stopping it
/// also reaches any children it spawned. Its standard output and error go to
/// a log file. Dropping the handle stops it: SIGTERM to the group, then
/// SIGKILL after [`STOP_GRACE`].
#[derive(Debug)]
pub(crate) struct Daemon {
    /// The child; its PID is also its process group ID.
    child: Child,
    /// Which part this is, for messages, e.g. "named (primary for …)".
    what: String,
    /// Where its standard output and error go.
    log: PathBuf,
    /// Set once the child has been waited for, so it is never signalled
    /// afterwards (its PID could belong to someone else by then).
    reaped: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `cmd` in its own process group with standard input closed and
    /// standard output and error appended to `log`.
    pub(crate) fn spawn(mut cmd: Command, what: impl Into<String>, log: &Path) -> Result<Self> {
        let what = what.into();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening log file {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("duplicating log file {}", log.display()), e))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: PathBuf::from(cmd.get_program()),
            source,
        })?;
        Ok(Daemon {
            child,
            what,
            log: log.to_path_buf(),
            reaped: None,
        })
    }

    /// The child's PID (also its process group ID).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            // An error here means the child was already waited for; treat it
            // as alive-or-gone the same way: nothing to reap.
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = Some(status);
            }
        }
        self.reaped
    }

    /// The last lines of the log file.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Sends `sig` to the child alone (not its group), e.g. SIGHUP to make
    /// named reload its configuration. Refused once the child was reaped,
    /// since its PID may belong to another process by then.
    pub(crate) fn signal(&self, sig: Signal) -> Result<()> {
        if let Some(status) = self.reaped {
            return Err(Error::unexpected(
                format!("sending {sig} to {}", self.what),
                format!(
                    "it had exited ({status})\n--- last lines of {} ---\n{}",
                    self.log.display(),
                    self.log_tail()
                ),
            ));
        }
        signal::kill(self.pid_nix(), sig).map_err(|errno| {
            Error::io(
                format!("sending {sig} to {} (pid {})", self.what, self.pid()),
                std::io::Error::from(errno),
            )
        })
    }

    /// Waits until `probe` says the part is ready. Fails with the tail of the
    /// log when the child exits first or `timeout` passes; `probe` returns
    /// `Err(reason)` (or `Ok(false)`) while not ready, and the last reason
    /// goes into the message.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> std::result::Result<bool, String>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(self.not_ready(start.elapsed(), format!("it exited ({status})")));
            }
            let last_reason = match probe() {
                Ok(true) => return Ok(()),
                Ok(false) => String::from("not ready yet"),
                Err(reason) => reason,
            };
            if start.elapsed() >= timeout {
                return Err(self.not_ready(start.elapsed(), last_reason));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// An [`Error::NotReady`] for this part with its log tail.
    pub(crate) fn not_ready(&self, waited: Duration, reason: String) -> Error {
        Error::NotReady {
            what: self.what.clone(),
            waited,
            reason,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// Stops the part: SIGTERM to its process group, SIGKILL after
    /// [`STOP_GRACE`], then reaps it. Does nothing when it already exited.
    pub(crate) fn stop(&mut self) {
        self.stop_within(STOP_GRACE);
    }

    /// [`stop`](Self::stop) with SIGKILL after `grace`; whether it exited
    /// within the grace (or had exited before).
    pub(crate) fn stop_within(&mut self, grace: Duration) -> bool {
        if self.exited().is_some() {
            return true;
        }
        let group = self.pid_nix();
        // ESRCH only: the group is gone already, which is what we want.
        let _ = signal::killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return true;
            }
            thread::sleep(POLL_INTERVAL);
        }
        let _ = signal::killpg(group, Signal::SIGKILL);
        if let Ok(status) = self.child.wait() {
            self.reaped = Some(status);
        }
        false
    }

    /// Kills the part at once (SIGKILL to its process group, no chance to
    /// clean up, as a crash or the OOM killer would) and reaps it. Does
    /// nothing when it already exited.
    pub(crate) fn kill(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // ESRCH only: the group is gone already.
        let _ = signal::killpg(self.pid_nix(), Signal::SIGKILL);
        if let Ok(status) = self.child.wait() {
            self.reaped = Some(status);
        }
    }

    /// The PID as nix wants it. PIDs fit in `i32` on Linux (pid_max is at
    /// most 2^22), so the fallback is never taken.
    fn pid_nix(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A long-running child process for benchmarks and tests that start a
/// binary themselves (the server, the daemon, inadyn): the same handling as
/// the harness's own parts. It runs in its own process group with standard
/// input closed and its output in a log file; dropping it stops it (SIGTERM
/// to the group, SIGKILL after 5 s).
#[derive(Debug)]
pub struct Process {
    /// The child and its log.
    inner: Daemon,
}

impl Process {
    /// Starts `cmd`, appending its standard output and error to `log`.
    /// `what` names it in messages, e.g. "peach-dyndns-server".
    pub fn spawn(cmd: Command, what: &str, log: &Path) -> Result<Process> {
        Ok(Process {
            inner: Daemon::spawn(cmd, what, log)?,
        })
    }

    /// Its PID (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        self.inner.log()
    }

    /// The last lines of its log, for messages.
    pub fn log_tail(&self) -> String {
        self.inner.log_tail()
    }

    /// `Ok` while it runs; once it has exited, an error with its exit
    /// status and the tail of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.inner.exited() {
            None => Ok(()),
            Some(status) => Err(Error::unexpected(
                format!("checking on {}", self.inner.what),
                format!(
                    "it exited ({status})\n--- last lines of {} ---\n{}",
                    self.inner.log.display(),
                    self.inner.log_tail()
                ),
            )),
        }
    }

    /// Sends `sig` to the process alone (not its group), e.g. SIGHUP to
    /// reload or SIGUSR2 to make inadyn check now. Refused once it exited.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        self.inner.signal(sig)
    }

    /// Kills it at once (SIGKILL to its group: a crash, a power cut to the
    /// process) and reaps it; nothing when it had exited already.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Stops it: SIGTERM to its group, and SIGKILL when it has not exited
    /// within `grace`, which is then an error (a clean stop is part of what
    /// a benchmark checks). `Ok` when it had exited already.
    pub fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.inner.stop_within(grace) {
            Ok(())
        } else {
            Err(Error::unexpected(
                format!("stopping {}", self.inner.what),
                format!(
                    "it did not exit within {grace:?} of SIGTERM and was killed\n\
                     --- last lines of {} ---\n{}",
                    self.inner.log.display(),
                    self.inner.log_tail()
                ),
            ))
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a log file, or a note saying why it
/// could not be read.
pub(crate) fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The output of a finished short command.
#[derive(Debug)]
pub(crate) struct Output {
    /// How it exited.
    pub(crate) status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub(crate) stdout: String,
    /// Its standard error, lossily decoded.
    pub(crate) stderr: String,
}

/// Runs a short command to the end, feeding `stdin`, and kills it after
/// `timeout`. Fails on a non-zero exit with the output in the error.
pub(crate) fn run(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Result<Output> {
    let output = run_unchecked(&mut cmd, stdin, timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: describe(&cmd),
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// Like [`run`], but a non-zero exit is returned, not an error.
pub(crate) fn run_unchecked(
    cmd: &mut Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: PathBuf::from(cmd.get_program()),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that exits without reading all its input gives EPIPE;
        // its exit status says what went wrong, so the write error is moot.
        let _ = pipe.write_all(text.as_bytes());
    }
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < timeout => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    command: describe(cmd),
                    waited: timeout,
                });
            }
            Err(e) => return Err(Error::io(format!("waiting for `{}`", describe(cmd)), e)),
        }
    };
    let collect = |reader: Option<thread::JoinHandle<String>>| {
        reader
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads a pipe to its end on a thread, so a chatty command cannot block on
/// a full pipe while we wait for it.
fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command line a person can re-run: the variables set for it, the
/// program and its arguments.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(key, value)| {
            value.map(|v| format!("{}={}", key.to_string_lossy(), v.to_string_lossy()))
        })
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// Quotes an argument for [`describe`] when it holds shell-special bytes.
fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Finds a program: `explicit` when given (it must exist), else the first
/// executable `name` in `PATH` and then in `extra_dirs`. `what` names it in
/// the error, e.g. "BIND 9 `named` (Debian package bind9)".
pub(crate) fn find_program(
    what: &str,
    name: &str,
    explicit: Option<&Path>,
    extra_dirs: &[&str],
) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(Error::Missing {
                what: what.to_string(),
                detail: format!("{} is not an executable file", path.display()),
            })
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut searched = Vec::new();
    for dir in std::env::split_paths(&path_var).chain(extra_dirs.iter().map(PathBuf::from)) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(dir.display().to_string());
    }
    Err(Error::Missing {
        what: what.to_string(),
        detail: format!("no executable `{name}` in {}", searched.join(":")),
    })
}

/// Whether `path` is a regular file with an execute bit set.
fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Writes `contents` to `path`, with the path in the error.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Reads `path` as text, with the path in the error.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}
