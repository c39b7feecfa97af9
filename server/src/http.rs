//! Reply helpers shared by the endpoints.

use serde_json::json;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::pipeline::ApiError;

/// A response with a status, a content type and a body.
pub fn reply(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
    let mut resp = Response::new(body.into().into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn json_reply(status: u16, value: &serde_json::Value) -> Response {
    reply(status, "application/json", value.to_string())
}

/// The JSON error reply of the design: `{"ok":false,"error","message"}`,
/// `last_seq` with `stale_seq`, `Retry-After` on 429 and 503.
pub fn error_reply(e: &ApiError) -> Response {
    let mut body = json!({"ok": false, "error": e.code.as_str(), "message": e.message});
    if let Some(last) = e.last_seq {
        body["last_seq"] = json!(last);
    }
    if let Some(max) = e.max_seq {
        body["max_seq"] = json!(max);
    }
    let mut resp = json_reply(e.status(), &body);
    if let Some(secs) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}
