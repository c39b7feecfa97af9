//! The `tls` part of the daemon's status (a leaf: the status and the
//! handle name it without depending on the ACME task).

use serde::{Deserialize, Serialize};

/// The `tls` part of the status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsStatus {
    /// `disabled`, `waiting` (for the name), `ordering`, `valid`, `error`.
    pub state: String,
    /// The names the certificate covers (or is ordered for).
    pub names: Vec<String>,
    /// The notAfter of the certificate on disk, Unix seconds.
    pub not_after: Option<u64>,
    /// When the next order is due, Unix seconds.
    pub next_attempt_at: Option<u64>,
    /// The last failure in words (cleared by success).
    pub last_error: Option<String>,
}
