//! Loading the SSB secret that signs updates, refusing one that other users
//! can read or write: the one implementation both binaries use,
//! [`peach_dyndns_sbot::secret`], under the name the daemon's modules know.
//! The daemon's credential is `ssb-secret` ([`SECRET_CREDENTIAL`]), as in
//! its packaged unit.

pub use peach_dyndns_sbot::secret::{
    load_secret, load_secret_from, SecretError, SECRET_CREDENTIAL,
};
