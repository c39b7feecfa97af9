//! [`SbotError`]: everything that can go wrong talking to an ssb-server.

use std::net::SocketAddr;
use std::time::Duration;

use peach_dyndns_protocol::identity::IdentityError;

/// An error from [`Sbot`](crate::Sbot).
///
/// Each variant carries what a person needs to act on it: the server's
/// address, the muxrpc method (`friends.isFollowing`, …) and what the
/// server said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SbotError {
    /// The server id (`@<base64>.ed25519`) is not an SSB id.
    #[error("invalid SSB server id: {source}")]
    InvalidId {
        /// What is wrong with it (the id, cut, and the reason).
        source: IdentityError,
    },

    /// The TCP connection could not be made (nothing listening, refused,
    /// unreachable).
    #[error("cannot connect to ssb-server at {addr}: {source}")]
    Connect {
        /// The address we dialled.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The TCP connection was made but the secret handshake failed: most
    /// often the server is not the one `server_id` names, it runs another
    /// network key, or it refused our key (ssb-server hangs up then).
    #[error(
        "secret handshake with {server_id} at {addr} failed: {reason} \
         (check the server id and the network key)"
    )]
    Handshake {
        /// The address we dialled.
        addr: SocketAddr,
        /// The server id we expected.
        server_id: String,
        /// What went wrong.
        reason: String,
    },

    /// No answer in time. `method` is `connect` or `handshake` for those
    /// steps, else the muxrpc method.
    #[error("{method} to ssb-server at {addr}: no answer within {after:?}")]
    Timeout {
        /// The address of the server.
        addr: SocketAddr,
        /// What we were waiting for.
        method: String,
        /// How long we waited.
        after: Duration,
    },

    /// The server answered the call with an error.
    #[error("ssb-server at {addr} refused {method}: {message}")]
    Rpc {
        /// The address of the server.
        addr: SocketAddr,
        /// The muxrpc method called.
        method: String,
        /// The error message the server sent.
        message: String,
    },

    /// The server's answer was not what the method returns (not JSON, not
    /// the expected shape).
    #[error("cannot read ssb-server's answer to {method} at {addr}: {reason}")]
    Decode {
        /// The address of the server.
        addr: SocketAddr,
        /// The muxrpc method called.
        method: String,
        /// What was wrong with the answer.
        reason: String,
    },

    /// The connection ended (the server went away, said goodbye, or the
    /// client was closed) before the call was answered.
    #[error("connection to ssb-server at {addr} is closed ({reason}); {method} got no answer")]
    Disconnected {
        /// The address of the server.
        addr: SocketAddr,
        /// The muxrpc method that got no answer.
        method: String,
        /// Why the connection ended.
        reason: String,
    },
}
