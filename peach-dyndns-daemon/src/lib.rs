//! peach-dyndns-daemon keeps a PeachCloud Pi's name (`eb4890.peach.dinosaur.is`)
//! pointed at the Pi's public addresses. Every minute it finds its addresses
//! (the pub's signed `/ip`, echo services, an interface's stable IPv6), and when
//! they changed it signs an update with the Pi's SSB key, seals it to the
//! pub's key and posts it to the pub; then it asks the pub's DNS whether the
//! name answers with those addresses. It tells peach-web and the owner how
//! that goes over JSON-RPC and a small web panel on `127.0.0.1:5116`, and on
//! a status LED.
//!
//! # Layout
//!
//! - [`config`]: the TOML config with named defaults, `load`, and
//!   validation into typed values.
//! - [`configure`]: the in-place edit of the config file behind the
//!   `configure` RPC.
//! - [`state`]: the state file (seq per pub, addresses, result), written
//!   atomically.
//! - [`secret`]: loading the SSB secret, refusing one others can read.
//! - [`ip`]: address discovery behind [`ip::IpSource`] / [`ip::Discover`].
//! - [`pubapi`]: the pub's HTTP API (`POST /update`, `GET /names/…`)
//!   behind [`pubapi::PubApi`].
//! - [`dns`]: the DNS check (A/AAAA at the pub's server) behind
//!   [`dns::DnsCheck`].
//! - [`directory`]: pubs' announcements and invites behind
//!   [`directory::PubDirectory`]; [`sbot`] is the real one over muxrpc.
//! - [`updater`]: the update loop (interval, change detection, backoff,
//!   parking, daily refresh, DNS verification).
//! - [`status`]: the status snapshot and the state names.
//! - [`led`]: the status LED behind [`led::StatusLed`] and its patterns.
//! - [`handle`]: the [`handle::Handle`] the RPC, the panel, signals and
//!   tests work through (config, status, "update now").
//! - [`rpc`]: the JSON-RPC methods and error codes.
//! - [`web`]: the warp routes: Host/Origin guard, `POST /rpc`, the panel
//!   (`panel/` holds its HTML, CSS and JS, embedded at build time), and
//!   `serve`, which runs them over HTTP/1.1.
//! - [`acme`]: `[acme]`: the certificate for the name through the pub's
//!   `acme_set`/`acme_clear` (instant-acme), and the `acme-hook` mode.
//! - [`daemon`]: the wiring: [`Daemon`] (`run`), [`once`] and the real
//!   services; it makes the handle and hands it to [`web`].
//! - `main.rs`: command line, logging, runtime, signals.
//!
//! # Running in-process
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use peach_dyndns_daemon::{config, daemon};
//! let config = config::load("/etc/peach-dyndns/daemon.toml".as_ref())?;
//! let services = daemon::real_services(&config)?;
//! let d = daemon::Daemon::new(config.clone(), None, services);
//! let listener = tokio::net::TcpListener::bind(config.rpc.listen).await?;
//! d.run(Some(listener), async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod acme;
pub mod config;
pub mod configure;
pub mod daemon;
pub mod directory;
pub mod dns;
pub mod events;
pub mod handle;
pub mod ip;
pub mod led;
pub mod pubapi;
pub mod rpc;
pub mod sbot;
pub mod secret;
pub mod state;
pub mod status;
pub mod updater;
pub mod web;

#[cfg(test)]
mod fakes;

pub use config::{load, Config};
pub use daemon::{once, Daemon, OnceOutcome};

/// A boxed, sendable future: what the side-effect traits return, so they
/// can be used as trait objects.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
