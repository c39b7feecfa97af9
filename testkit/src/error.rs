//! The harness's error type.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What `scripts/…` to run when a part is missing; repeated in every
/// "missing" message so a newcomer knows the next step.
pub(crate) const INSTALL_HINT: &str =
    "`scripts/test` installs it (or run `scripts/install-test-deps` alone)";

/// Everything that can go wrong while starting or driving a real part.
///
/// Each variant carries what a person needs to fix it: the missing thing and
/// where it was looked for, the command that failed and its output, or the
/// last lines of the part's log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program or file the harness needs is not installed.
    #[error("{what} is missing: {detail}; {INSTALL_HINT}")]
    Missing {
        /// What is missing, e.g. "BIND 9 `named`".
        what: String,
        /// Where it was looked for.
        detail: String,
    },

    /// The operating system refused to start a program.
    #[error("could not start {}: {source}", program.display())]
    Spawn {
        /// The program that was started.
        program: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },

    /// A part started but did not become ready (or exited) in time.
    #[error("{what} did not become ready within {waited:?}: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    NotReady {
        /// Which part, e.g. "named (primary for peach.dinosaur.is)".
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// What the harness saw last (an exit status, a refused query…).
        reason: String,
        /// The part's log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A short-lived command (`dig`, `nsupdate`, the ssb-server CLI) failed.
    #[error("`{command}` failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    Command {
        /// The command line, for a person to re-run.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on standard output.
        stdout: String,
        /// What it printed on standard error.
        stderr: String,
    },

    /// A command ran too long and was killed.
    #[error("`{command}` did not finish within {waited:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// How long the harness waited.
        waited: Duration,
    },

    /// Reading or writing a file, or another I/O step, failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing, with the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A part answered with something the harness did not expect.
    #[error("{context}: {detail}")]
    Unexpected {
        /// What the harness was doing.
        context: String,
        /// What it got instead.
        detail: String,
    },
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Unexpected`] with context.
    pub(crate) fn unexpected(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Unexpected {
            context: context.into(),
            detail: detail.into(),
        }
    }
}

/// Unwraps a harness result or panics with the error's full message: the
/// convenience methods use this so a failing test shows what went wrong.
pub(crate) fn or_panic<T>(result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("testkit: {e}"),
    }
}
