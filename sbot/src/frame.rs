//! muxrpc framing: the 9-byte packet header, request bodies and the decoding
//! of reply bodies. Pure functions, no I/O.
//!
//! A muxrpc packet is a header followed by `body_len` bytes of body:
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | flags: bit 3 stream, bit 2 end-or-error, bits 0–1 body type (0 binary, 1 UTF-8, 2 JSON) |
//! | 1–4 | body length, u32 big-endian |
//! | 5–8 | request number, i32 big-endian: positive from the side that asks, negated in the answers |
//!
//! A header of nine zero bytes is the goodbye: the peer will send nothing more.

use serde_json::{json, Value};

/// Length of a muxrpc packet header.
pub(crate) const HEADER_LEN: usize = 9;

/// The largest body this client accepts, in bytes (1 MiB). An SSB message is
/// at most 8 KiB of JSON and muxrpc sends each stream item as its own
/// packet, so a larger length means a broken or hostile peer; refusing it
/// keeps a bogus length from making us allocate up to 4 GiB.
pub(crate) const MAX_BODY_LEN: u32 = 1 << 20;

/// Flag bit: the packet belongs to a stream (source, sink, duplex).
const FLAG_STREAM: u8 = 1 << 3;
/// Flag bit: the packet ends a stream, or carries an error.
const FLAG_END_OR_ERROR: u8 = 1 << 2;
/// Mask of the body type bits.
const BODY_TYPE_MASK: u8 = 0b11;

/// How a packet's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyType {
    /// Raw bytes (blobs). Nothing peach-dyndns calls answers with these.
    Binary,
    /// A UTF-8 string without JSON quoting: muxrpc sends string values so.
    Utf8,
    /// A JSON document.
    Json,
}

/// A decoded packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The packet belongs to a stream.
    pub(crate) stream: bool,
    /// The packet ends a stream or carries an error.
    pub(crate) end_or_error: bool,
    /// Encoding of the body.
    pub(crate) body_type: BodyType,
    /// Length of the body that follows.
    pub(crate) body_len: u32,
    /// Request number; negative in answers.
    pub(crate) req: i32,
}

impl Header {
    /// Whether this is the all-zero goodbye header.
    pub(crate) fn is_goodbye(&self) -> bool {
        !self.stream
            && !self.end_or_error
            && self.body_type == BodyType::Binary
            && self.body_len == 0
            && self.req == 0
    }

    /// Encodes the header into its nine bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut flags = match self.body_type {
            BodyType::Binary => 0,
            BodyType::Utf8 => 1,
            BodyType::Json => 2,
        };
        if self.stream {
            flags |= FLAG_STREAM;
        }
        if self.end_or_error {
            flags |= FLAG_END_OR_ERROR;
        }
        let mut out = [0u8; HEADER_LEN];
        out[0] = flags;
        out[1..5].copy_from_slice(&self.body_len.to_be_bytes());
        out[5..9].copy_from_slice(&self.req.to_be_bytes());
        out
    }

    /// Decodes nine header bytes. Fails on the unused body type 3 and on a
    /// body longer than [`MAX_BODY_LEN`].
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, String> {
        let flags = bytes[0];
        let body_type = match flags & BODY_TYPE_MASK {
            0 => BodyType::Binary,
            1 => BodyType::Utf8,
            2 => BodyType::Json,
            other => return Err(format!("unknown muxrpc body type {other}")),
        };
        let body_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if body_len > MAX_BODY_LEN {
            return Err(format!(
                "muxrpc packet of {body_len} bytes is over the limit of {MAX_BODY_LEN}"
            ));
        }
        Ok(Header {
            stream: flags & FLAG_STREAM != 0,
            end_or_error: flags & FLAG_END_OR_ERROR != 0,
            body_type,
            body_len,
            req: i32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
        })
    }
}

/// The kind of a muxrpc call, as named in the request body's `type`.
///
/// `sync` methods of an ssb-server manifest travel as `async` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallType {
    /// One request, one answer.
    Async,
    /// One request, a stream of answers ended by an end packet.
    Source,
}

impl CallType {
    /// The name muxrpc uses in the request body.
    fn wire_name(self) -> &'static str {
        match self {
            CallType::Async => "async",
            CallType::Source => "source",
        }
    }
}

/// Builds a whole request packet (header and JSON body) for `method` (the
/// dotted name split into parts, e.g. `["friends", "isFollowing"]`).
pub(crate) fn request_packet(req: i32, call: CallType, method: &[&str], args: &Value) -> Vec<u8> {
    let body = json!({ "name": method, "type": call.wire_name(), "args": args }).to_string();
    packet(
        Header {
            stream: call == CallType::Source,
            end_or_error: false,
            body_type: BodyType::Json,
            // A request body is a few hundred bytes; u32::MAX only guards the cast.
            body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            req,
        },
        body.as_bytes(),
    )
}

/// Builds the packet that ends our side of stream `req` (positive for a
/// stream we opened, negative for one the peer opened): body `true` for a
/// normal end, or an error object.
pub(crate) fn stream_end_packet(req: i32, error: Option<&str>) -> Vec<u8> {
    let body = match error {
        None => "true".to_owned(),
        Some(message) => error_body(message),
    };
    packet(
        Header {
            stream: true,
            end_or_error: true,
            body_type: BodyType::Json,
            body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            req,
        },
        body.as_bytes(),
    )
}

/// Builds the error answer to an async request `req` the peer made of us.
pub(crate) fn async_error_packet(req: i32, message: &str) -> Vec<u8> {
    let body = error_body(message);
    packet(
        Header {
            stream: false,
            end_or_error: true,
            body_type: BodyType::Json,
            body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            req: -req,
        },
        body.as_bytes(),
    )
}

/// The goodbye packet: nine zero bytes.
pub(crate) fn goodbye_packet() -> Vec<u8> {
    vec![0; HEADER_LEN]
}

/// An error body as muxrpc (JavaScript) writes it.
fn error_body(message: &str) -> String {
    json!({ "name": "Error", "message": message, "stack": "" }).to_string()
}

fn packet(header: Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    out
}

/// Turns a reply body into JSON: JSON bodies are parsed, UTF-8 bodies become
/// a JSON string (muxrpc sends string values unquoted), binary is refused.
pub(crate) fn body_value(body_type: BodyType, body: &[u8]) -> Result<Value, String> {
    match body_type {
        BodyType::Json => serde_json::from_slice(body).map_err(|e| {
            format!(
                "reply is not valid JSON ({e}): {}",
                snippet(&String::from_utf8_lossy(body))
            )
        }),
        BodyType::Utf8 => String::from_utf8(body.to_vec())
            .map(Value::String)
            .map_err(|e| format!("reply is not valid UTF-8: {e}")),
        BodyType::Binary => Err(format!("unexpected binary reply of {} bytes", body.len())),
    }
}

/// The message of an error body: the `message` field of the JSON error
/// object muxrpc sends, or the body as text when it is something else.
pub(crate) fn error_message(body_type: BodyType, body: &[u8]) -> String {
    if body_type != BodyType::Binary {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            if let Some(message) = value.get("message").and_then(Value::as_str) {
                return message.to_owned();
            }
            if let Some(text) = value.as_str() {
                return text.to_owned();
            }
        }
    }
    snippet(&String::from_utf8_lossy(body))
}

/// At most 200 characters of `text`, for error messages.
fn snippet(text: &str) -> String {
    /// Long enough to recognise what a peer said, short enough for one log line.
    const MAX_CHARS: usize = 200;
    let mut out: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Header {
        let mut arr = [0u8; HEADER_LEN];
        arr.copy_from_slice(&bytes[..HEADER_LEN]);
        Header::decode(&arr).expect("valid header")
    }

    #[test]
    fn header_round_trips() {
        for h in [
            Header {
                stream: true,
                end_or_error: false,
                body_type: BodyType::Json,
                body_len: 123,
                req: 5,
            },
            Header {
                stream: false,
                end_or_error: true,
                body_type: BodyType::Utf8,
                body_len: 2123,
                req: -5,
            },
            Header {
                stream: false,
                end_or_error: false,
                body_type: BodyType::Binary,
                body_len: 0,
                req: i32::MIN,
            },
        ] {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn header_bytes_match_muxrpc() {
        // A JSON source request number 1 with a 10-byte body, as
        // packet-stream-codec writes it: flags 0b1010.
        let h = Header {
            stream: true,
            end_or_error: false,
            body_type: BodyType::Json,
            body_len: 10,
            req: 1,
        };
        assert_eq!(h.encode(), [0x0a, 0, 0, 0, 10, 0, 0, 0, 1]);
        // The answer to request 1: req is -1 in two's complement.
        let reply = header(&[0x06, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(reply.req, -1);
        assert!(reply.end_or_error && !reply.stream);
    }

    #[test]
    fn goodbye_is_nine_zero_bytes() {
        let bytes = goodbye_packet();
        assert_eq!(bytes, [0u8; HEADER_LEN]);
        assert!(header(&bytes).is_goodbye());
        assert!(!header(&stream_end_packet(1, None)).is_goodbye());
    }

    #[test]
    fn refuses_unknown_body_type_and_huge_bodies() {
        assert!(Header::decode(&[0x03, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        let too_long = (MAX_BODY_LEN + 1).to_be_bytes();
        let bytes = [
            0x02,
            too_long[0],
            too_long[1],
            too_long[2],
            too_long[3],
            0,
            0,
            0,
            1,
        ];
        assert!(Header::decode(&bytes).is_err());
    }

    #[test]
    fn request_packet_has_muxrpc_body() {
        let bytes = request_packet(
            7,
            CallType::Async,
            &["friends", "isFollowing"],
            &json!([{"source": "@a", "dest": "@b"}]),
        );
        let h = header(&bytes);
        assert_eq!(h.req, 7);
        assert!(!h.stream && !h.end_or_error);
        assert_eq!(h.body_type, BodyType::Json);
        let body: Value = serde_json::from_slice(&bytes[HEADER_LEN..]).expect("json body");
        assert_eq!(
            usize::try_from(h.body_len).ok(),
            Some(bytes.len() - HEADER_LEN)
        );
        assert_eq!(
            body,
            json!({"name": ["friends", "isFollowing"], "type": "async",
                   "args": [{"source": "@a", "dest": "@b"}]})
        );
        let source = header(&request_packet(8, CallType::Source, &["x"], &json!([])));
        assert!(source.stream);
    }

    #[test]
    fn stream_end_and_error_packets() {
        let end = stream_end_packet(3, None);
        let h = header(&end);
        assert!(h.stream && h.end_or_error && h.req == 3);
        assert_eq!(&end[HEADER_LEN..], b"true");

        let err = async_error_packet(4, "no such method");
        let h = header(&err);
        assert!(!h.stream && h.end_or_error && h.req == -4);
        assert_eq!(
            error_message(h.body_type, &err[HEADER_LEN..]),
            "no such method"
        );
    }

    #[test]
    fn body_values() {
        assert_eq!(body_value(BodyType::Json, b"true"), Ok(json!(true)));
        assert_eq!(
            body_value(BodyType::Utf8, b"127.0.0.1:8008:@x~y"),
            Ok(json!("127.0.0.1:8008:@x~y"))
        );
        assert!(body_value(BodyType::Json, b"{nope").is_err());
        assert!(body_value(BodyType::Utf8, &[0xff, 0xfe]).is_err());
        assert!(body_value(BodyType::Binary, b"abc").is_err());
    }

    #[test]
    fn error_messages_with_escapes_are_read() {
        // ssb-server's errors carry a multi-line stack: the escaped newlines
        // must not stop us from reading the message (kuska-ssb 0.4 fails here).
        let body = br#"{"name":"Error","message":"method:nope is not in list of allowed methods","stack":"Error: x\n    at y"}"#;
        assert_eq!(
            error_message(BodyType::Json, body),
            "method:nope is not in list of allowed methods"
        );
        assert_eq!(error_message(BodyType::Utf8, b"plain words"), "plain words");
        let long = "x".repeat(500);
        assert_eq!(
            error_message(BodyType::Utf8, long.as_bytes())
                .chars()
                .count(),
            201
        );
    }
}
