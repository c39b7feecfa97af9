//! peach-dyndns-server: the pub's update server.
//!
//! A pub that offers dynamic DNS runs this beside BIND (or on its own, with
//! the embedded DNS) and ssb-server. It accepts sealed, signed updates from
//! the Pis the pub follows on SSB and keeps the zone in step, with a
//! registry in SQLite that DNS never disagrees with.
//!
//! # Layout
//!
//! - `main.rs`: arguments → tracing → config → runtime → [`run`], plus the
//!   operator commands (`init`, `announce`, `names`, `revoke`, `reset-seq`,
//!   `check`).
//! - [`server`]: wiring: secret, sockets, [`build_state`], [`run`].
//! - [`state`]: [`State`], what every request shares.
//! - [`config`]: the TOML config, validated, errors naming file and key.
//! - [`api`]: [`api::routes`], every HTTP endpoint as one warp filter.
//! - [`http`]: reply helpers shared by the endpoints.
//! - [`addr`]: IPv4-mapped addresses as IPv4, IPv6 sources per /64.
//! - [`clock`]: unix milliseconds, and the dates the server shows.
//! - [`conn`]: the HTTP accept loop: connection caps, per-source shares,
//!   header and idle deadlines, plain and TLS listeners under one cap.
//! - [`tls`]: the `[tls]` certificate and key, loaded with rustls, checked,
//!   reloaded when the files change.
//! - [`own_cert`]: `[tls] acme = true`: the pub's own certificate from an
//!   ACME CA, its DNS-01 challenge answered in its own zone, renewed.
//! - [`update`]: the front door of signed updates (`POST /update`): open,
//!   verify, the checks that need no lock.
//! - [`dyndns2`]: the front door of `GET /nic/update` for routers,
//!   ddclient and inadyn.
//! - [`pipeline`]: the one pipeline both front doors end in: graph, locks,
//!   `seq` and ownership under the locks, DNS write, registry commit, DNS
//!   restore on a failed commit.
//! - [`locks`]: the per-key and per-name locks of the pipeline.
//! - [`control`]: the operator's unix socket, so `revoke` and `reset-seq`
//!   act in the running server at once.
//! - [`registry`]: the SQLite name registry.
//! - [`dns`]: the [`dns::ZoneBackend`] trait and the backends (embedded,
//!   bind-local, nsupdate, rfc2136).
//! - [`graph`]: the [`graph::SocialGraph`] trait: ssb-server or an allowlist.
//! - [`ratelimit`]: token buckets per key and per source address.
//! - [`metrics`]: Prometheus text.
//! - [`operator`]: what the operator commands do.
//! - [`acme`]: ACME challenges over time: the start-up reconcile and the
//!   expiry sweep (the ops themselves run in [`pipeline`]).
//! - [`sweep`]: keys the pub stopped following: their names stop resolving
//!   after a grace and are freed after a second one.

pub mod acme;
pub mod addr;
pub mod api;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod dns;
pub mod dyndns2;
pub mod graph;
pub mod http;
pub mod locks;
pub mod metrics;
pub mod operator;
pub mod own_cert;
pub mod pipeline;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod state;
pub mod sweep;
pub mod tls;
pub mod update;

pub use server::{build_state, run, Listeners, StartError};
pub use state::State;
