//! The error codes of the wire contract and the protocol's own error type.

use std::fmt;

/// Every `error` code a server can answer with, as listed in the design's
/// table. The string form is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, bad base64, unknown `v`, missing or unknown fields.
    Malformed,
    /// The sealed box does not open with the pub's key.
    Undecryptable,
    /// The signature does not verify against `public_key`.
    BadSignature,
    /// The pub does not follow the key.
    NotFollowed,
    /// The pub blocks the key.
    Blocked,
    /// Another key owns the name.
    NameTaken,
    /// `seq` is not above the last one accepted from this key.
    StaleSeq,
    /// The body is over the size limit.
    TooLarge,
    /// The name is not a valid DNS label.
    InvalidName,
    /// The name is reserved by the server.
    ReservedName,
    /// An address is not acceptable (not globally routable, wrong family).
    InvalidIp,
    /// The message is for another pub's zone.
    WrongDomain,
    /// The message is for another pub (its `pub` is not this server's id).
    WrongPub,
    /// `seq` is more than a day ahead of `max(last_seq, server time)`.
    InvalidSeq,
    /// An `acme_set` value is not 43 characters of base64url.
    InvalidTxt,
    /// An ACME op for a name this key does not hold.
    NotRegistered,
    /// The key already owns as many names as the server allows.
    TooManyNames,
    /// Too many requests; retry after the `Retry-After` header.
    RateLimited,
    /// The DNS backend did not accept the change; nothing was changed.
    DnsUnavailable,
    /// The social graph could not be asked; nothing was changed.
    GraphUnavailable,
    /// A fault of the server itself (its database); nothing was changed.
    Internal,
}

impl ErrorCode {
    /// All codes, in the order of the design's table.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::Malformed,
        ErrorCode::Undecryptable,
        ErrorCode::BadSignature,
        ErrorCode::NotFollowed,
        ErrorCode::Blocked,
        ErrorCode::NameTaken,
        ErrorCode::StaleSeq,
        ErrorCode::TooLarge,
        ErrorCode::InvalidName,
        ErrorCode::ReservedName,
        ErrorCode::InvalidIp,
        ErrorCode::WrongDomain,
        ErrorCode::WrongPub,
        ErrorCode::InvalidSeq,
        ErrorCode::InvalidTxt,
        ErrorCode::NotRegistered,
        ErrorCode::TooManyNames,
        ErrorCode::RateLimited,
        ErrorCode::DnsUnavailable,
        ErrorCode::GraphUnavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears in the JSON `error` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Undecryptable => "undecryptable",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::NotFollowed => "not_followed",
            ErrorCode::Blocked => "blocked",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::StaleSeq => "stale_seq",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::ReservedName => "reserved_name",
            ErrorCode::InvalidIp => "invalid_ip",
            ErrorCode::WrongDomain => "wrong_domain",
            ErrorCode::WrongPub => "wrong_pub",
            ErrorCode::InvalidSeq => "invalid_seq",
            ErrorCode::InvalidTxt => "invalid_txt",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::TooManyNames => "too_many_names",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::DnsUnavailable => "dns_unavailable",
            ErrorCode::GraphUnavailable => "graph_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parses a wire code; `None` for a code this version does not know.
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The HTTP status the server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed => 400,
            ErrorCode::Undecryptable | ErrorCode::BadSignature => 401,
            ErrorCode::NotFollowed | ErrorCode::Blocked => 403,
            ErrorCode::NameTaken | ErrorCode::StaleSeq => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::InvalidName
            | ErrorCode::ReservedName
            | ErrorCode::InvalidIp
            | ErrorCode::WrongDomain
            | ErrorCode::WrongPub
            | ErrorCode::InvalidSeq
            | ErrorCode::InvalidTxt
            | ErrorCode::NotRegistered
            | ErrorCode::TooManyNames => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::DnsUnavailable | ErrorCode::GraphUnavailable => 503,
        }
    }

    /// Whether a client may succeed by sending the same thing again later
    /// (rate limits, unavailable backends, a server fault). Every other error needs a
    /// change of config, key or name first, so a daemon stops retrying.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::DnsUnavailable
                | ErrorCode::GraphUnavailable
                | ErrorCode::Internal
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong while reading, checking, opening or verifying protocol
/// data. Each variant says which field or rule, and maps onto one
/// [`ErrorCode`] through [`ProtocolError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Syntax or structure is wrong: the string says where.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is larger than allowed.
    #[error("request body is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size seen (or a lower bound of it).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The sealed box did not open with the pub's key.
    #[error(
        "the sealed box does not open with this pub's key (sealed to another pub, or damaged)"
    )]
    Undecryptable,
    /// The signature did not verify.
    #[error("the signature does not verify for {public_key}")]
    BadSignature {
        /// The key the message claims.
        public_key: String,
    },
    /// A name breaks the DNS label rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A name is reserved.
    #[error("the name {name:?} is reserved on this server")]
    ReservedName {
        /// The name as given.
        name: String,
    },
    /// An address is not acceptable.
    #[error("address {addr} in `{field}` is not acceptable: {reason}")]
    InvalidIp {
        /// `ip` or `ip6`.
        field: &'static str,
        /// The address as given.
        addr: String,
        /// Why not.
        reason: String,
    },
    /// The message names another zone.
    #[error("this server serves {expected:?}, the message is for {got:?}")]
    WrongDomain {
        /// The server's zone.
        expected: String,
        /// The message's `domain`.
        got: String,
    },
    /// The message is for another pub.
    #[error("this pub is {expected}, the message is for {got}")]
    WrongPub {
        /// This server's id.
        expected: String,
        /// The message's `pub`.
        got: String,
    },
    /// `seq` is too far ahead.
    #[error("seq {seq} is more than a day ahead: the most this pub accepts now is {max_seq}")]
    InvalidSeq {
        /// The message's `seq`.
        seq: u64,
        /// The last `seq` accepted from the key, if any.
        last_seq: Option<u64>,
        /// The largest `seq` accepted now.
        max_seq: u64,
    },
    /// An ACME TXT value is not acceptable.
    #[error("`txt` value {index}: {reason}")]
    InvalidTxt {
        /// Which value (0-based).
        index: usize,
        /// Why not.
        reason: &'static str,
    },
}

impl ProtocolError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Malformed(_) => ErrorCode::Malformed,
            ProtocolError::TooLarge { .. } => ErrorCode::TooLarge,
            ProtocolError::Undecryptable => ErrorCode::Undecryptable,
            ProtocolError::BadSignature { .. } => ErrorCode::BadSignature,
            ProtocolError::InvalidName { .. } => ErrorCode::InvalidName,
            ProtocolError::ReservedName { .. } => ErrorCode::ReservedName,
            ProtocolError::InvalidIp { .. } => ErrorCode::InvalidIp,
            ProtocolError::WrongDomain { .. } => ErrorCode::WrongDomain,
            ProtocolError::WrongPub { .. } => ErrorCode::WrongPub,
            ProtocolError::InvalidSeq { .. } => ErrorCode::InvalidSeq,
            ProtocolError::InvalidTxt { .. } => ErrorCode::InvalidTxt,
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> ProtocolError {
        ProtocolError::Malformed(detail.into())
    }
}

/// The JSON body of every error answer: `{"ok":false,"error":…,"message":…}`,
/// plus `last_seq` on `stale_seq` and `invalid_seq`, and `max_seq` on
/// `invalid_seq`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Always `false`.
    pub ok: bool,
    /// The wire code; a code this version does not know reads as
    /// [`ErrorCode::Internal`], so a client never acts on a guess.
    #[serde(with = "wire_code")]
    pub error: ErrorCode,
    /// For a person.
    pub message: String,
    /// The last accepted `seq`, with `stale_seq` and `invalid_seq`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_seq: Option<u64>,
    /// The largest `seq` the pub accepts now, with `invalid_seq`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_seq: Option<u64>,
}

/// `ErrorCode` as its wire string in serde.
mod wire_code {
    use super::ErrorCode;

    pub(super) fn serialize<S: serde::Serializer>(
        code: &ErrorCode,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(code.as_str())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<ErrorCode, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Ok(ErrorCode::from_wire(&text).unwrap_or(ErrorCode::Internal))
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ErrorBody {
    /// An error body for a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            ok: false,
            error: code,
            message: message.into(),
            last_seq: None,
            max_seq: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_statuses_match_the_table() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
        assert_eq!(ErrorCode::StaleSeq.http_status(), 409);
        assert_eq!(ErrorCode::TooLarge.http_status(), 413);
        assert_eq!(ErrorCode::WrongDomain.http_status(), 422);
        assert_eq!(ErrorCode::GraphUnavailable.http_status(), 503);
        assert!(ErrorCode::RateLimited.is_retryable());
        assert!(!ErrorCode::NameTaken.is_retryable());
    }
}
