//! The bench's command line, and the names every part of the run shares.

use std::path::PathBuf;

use clap::Parser;

/// The zone the bench's server serves.
pub(crate) const DOMAIN: &str = "peach.localhost";

/// The daemon's name.
pub(crate) const DAEMON_NAME: &str = "benchpi";

/// Footprint benchmark of peach-dyndns-daemon against inadyn, on loopback.
#[derive(Parser)]
pub(crate) struct Args {
    /// No-change checks the daemon makes after start; samples are taken
    /// after a tenth of them and after all.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) checks: u64,
    /// The daemon's check interval in milliseconds (`check_interval_ms`).
    #[arg(long, default_value_t = 2)]
    pub(crate) interval_ms: u64,
    /// Checks inadyn makes (driven by SIGUSR2); 0 skips inadyn.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) inadyn_checks: u64,
    /// Milliseconds between inadyn's checks (0: the next as soon as one is
    /// done). Set it to --interval-ms to compare both at the same pace.
    #[arg(long, default_value_t = 0)]
    pub(crate) inadyn_pace_ms: u64,
    /// Build the server with the release profile (slower to build; the
    /// daemon's numbers do not depend on it).
    #[arg(long)]
    pub(crate) release_server: bool,
    /// Use the binaries already built.
    #[arg(long)]
    pub(crate) no_build: bool,
    /// Measure this daemon binary instead of the release-daemon build (to
    /// compare builds; implies nothing about building the server).
    #[arg(long, value_name = "PATH")]
    pub(crate) daemon: Option<PathBuf>,
    /// Drop the daemon binary's pages from the page cache first (`dd
    /// iflag=nocache`), so it starts as after a reboot: its code then comes
    /// in through readahead, and its RSS varies more from run to run.
    #[arg(long)]
    pub(crate) cold: bool,
    /// Let the exit code judge only the memory targets (the daemon's VmRSS
    /// and VmHWM), not CPU time, which depends on the machine's load.
    #[arg(long)]
    pub(crate) memory_only: bool,
}
