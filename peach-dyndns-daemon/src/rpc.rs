//! JSON-RPC 2.0 methods (jsonrpc-core), as peach-web and the panel call
//! them. Served by [`crate::web`] at `POST /rpc` (and `POST /`).
//!
//! | method | params | result |
//! |---|---|---|
//! | `ping` | none | `"success"` |
//! | `status` | none | the [`Status`](crate::status::Status) object |
//! | `is_online` | none | `true` / `false` |
//! | `get_config` | none | the config as JSON, plus `config_path` |
//! | `configure` | `{name, pub_id, url?, domain?, enabled?}` | the new config |
//! | `update_now` | none | the status after a forced check |
//! | `list_pubs` | none | `[{pub_id, domain, url, ttl?, origin, conflict, same_domain_as?}]`: full ids and URLs; only pubs the Pi follows |
//! | `check_name` | `{name, pub_id?}` | `{name, fqdn, available, reason?, yours, …}`; `yours` from the daemon's own state |
//! | `accept_invite` | `{invite}` | `true` |
//! | `events` | none | `[{at, kind, message, count, code?, first_at?}]`, newest first (at most 50) |
//! | `release` | `{confirm: true}` | the status after the pub accepted the release |
//! | `check_pub` | `{pub_id}` | `{pub_id, url, reachable, domain?, domain_matches?, detail?}` |
//!
//! Errors besides JSON-RPC's own (−32700 parse error, −32600 invalid
//! request, −32601 method not found, −32602 invalid params) use the block
//! −32001 … −32008 of the range the spec leaves to servers; see [`codes`].

use std::sync::Arc;

use jsonrpc_core::{Error, ErrorCode, IoHandler, Params, Value};
use peach_dyndns_protocol::identity::PublicKey;
use peach_dyndns_protocol::rules;
use serde::Deserialize;
use serde_json::json;

use crate::config::ConfigError;
use crate::configure::RegistrationEdit;
use crate::handle::{Handle, HandleError};
use crate::pubapi::UpdateError;

/// The daemon's own error codes.
pub mod codes {
    /// No name or pub is configured (for `check_name` without `pub_id`).
    pub const NOT_CONFIGURED: i64 = -32001;
    /// The config file could not be read or written.
    pub const CONFIG_FILE: i64 = -32002;
    /// The local sbot could not be reached or failed.
    pub const SBOT: i64 = -32003;
    /// The invite was refused.
    pub const INVITE: i64 = -32004;
    /// The pub could not be reached or answered with an error.
    pub const PUB: i64 = -32005;
    /// The pub named is not in `list_pubs`.
    pub const UNKNOWN_PUB: i64 = -32006;
    /// The daemon is shutting down.
    pub const STOPPING: i64 = -32007;
    /// The operation did not finish in time.
    pub const TIMEOUT: i64 = -32008;
    /// The release was not made (no name held; the pub refused or could
    /// not be reached).
    pub const RELEASE: i64 = -32009;
}

fn error(code: i64, message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::ServerError(code),
        message: message.into(),
        data: None,
    }
}

fn invalid_params(message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::InvalidParams,
        message: message.into(),
        data: None,
    }
}

/// Accepts no params, `[]` or `{}`.
fn no_params(params: Params) -> Result<(), Error> {
    match params {
        Params::None => Ok(()),
        Params::Array(a) if a.is_empty() => Ok(()),
        Params::Map(m) if m.is_empty() => Ok(()),
        _ => Err(invalid_params("this method takes no params")),
    }
}

/// Parses named params (an object) strictly.
fn named<T: serde::de::DeserializeOwned>(params: Params) -> Result<T, Error> {
    match params {
        Params::Map(map) => serde_json::from_value(Value::Object(map))
            .map_err(|e| invalid_params(format!("invalid params: {e}"))),
        _ => Err(invalid_params("params must be an object with named fields")),
    }
}

fn handle_error(e: HandleError) -> Error {
    match e {
        HandleError::Config(ConfigError::Invalid { key, reason, .. }) => {
            invalid_params(format!("{key}: {reason}"))
        }
        HandleError::Config(e) => error(codes::CONFIG_FILE, e.to_string()),
        HandleError::Directory(e @ crate::directory::DirectoryError::Invite(_)) => {
            error(codes::INVITE, e.to_string())
        }
        HandleError::Directory(e) => error(codes::SBOT, e.to_string()),
        HandleError::Stopping => error(codes::STOPPING, e.to_string()),
        HandleError::Timeout(_) => error(codes::TIMEOUT, e.to_string()),
        HandleError::Release(_) => error(codes::RELEASE, e.to_string()),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error {
        code: ErrorCode::InternalError,
        message: e.to_string(),
        data: None,
    })
}

/// `configure`'s params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigureParams {
    /// The label.
    name: String,
    /// The pub's id.
    pub_id: String,
    /// The pub's update URL (with `domain`), when it is not to come from
    /// the pub's announcement.
    #[serde(default)]
    url: Option<String>,
    /// The pub's zone (with `url`).
    #[serde(default)]
    domain: Option<String>,
    /// Turn updates on or off.
    #[serde(default)]
    enabled: Option<bool>,
}

/// `check_name`'s params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckNameParams {
    /// The label to check.
    name: String,
    /// The pub to ask; the configured one when absent.
    #[serde(default)]
    pub_id: Option<String>,
}

/// `accept_invite`'s params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteParams {
    /// `host:port:@key~seed`.
    invite: String,
}

/// `release`'s params: the owner said yes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseParams {
    /// Must be `true`: a release cannot be undone (another Pi may take
    /// the name).
    confirm: bool,
}

/// `check_pub`'s params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckPubParams {
    /// The pub to ask (one of `list_pubs`).
    pub_id: String,
}

/// Builds the handler with every method bound to `shared`.
pub fn handler(shared: Arc<Handle>) -> IoHandler {
    let mut io = IoHandler::new();

    io.add_method("ping", |params: Params| async move {
        no_params(params)?;
        Ok(Value::from("success"))
    });

    let s = shared.clone();
    io.add_method("status", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            to_value(&s.status())
        }
    });

    let s = shared.clone();
    io.add_method("is_online", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            Ok(Value::Bool(s.status().online))
        }
    });

    let s = shared.clone();
    io.add_method("get_config", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            config_value(&s)
        }
    });

    let s = shared.clone();
    io.add_method("configure", move |params: Params| {
        let s = s.clone();
        async move {
            let p: ConfigureParams = named(params)?;
            let edit = RegistrationEdit {
                name: Some(p.name),
                pub_id: Some(p.pub_id),
                url: p.url,
                domain: p.domain,
                enabled: p.enabled,
            };
            s.configure(edit).await.map_err(handle_error)?;
            config_value(&s)
        }
    });

    let s = shared.clone();
    io.add_method("update_now", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            let status = s.update_now().await.map_err(handle_error)?;
            to_value(&status)
        }
    });

    let s = shared.clone();
    io.add_method("list_pubs", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            let list = s.list_pubs().await.map_err(handle_error)?;
            to_value(&list)
        }
    });

    let s = shared.clone();
    io.add_method("check_name", move |params: Params| {
        let s = s.clone();
        async move {
            let p: CheckNameParams = named(params)?;
            check_name(&s, p).await
        }
    });

    let s = shared.clone();
    io.add_method("events", move |params: Params| {
        let s = s.clone();
        async move {
            no_params(params)?;
            to_value(&s.events())
        }
    });

    let s = shared.clone();
    io.add_method("release", move |params: Params| {
        let s = s.clone();
        async move {
            let p: ReleaseParams = named(params)?;
            if !p.confirm {
                return Err(invalid_params(
                    "confirm: must be true (a released name may be taken by another Pi)",
                ));
            }
            let status = s.release().await.map_err(handle_error)?;
            to_value(&status)
        }
    });

    let s = shared.clone();
    io.add_method("check_pub", move |params: Params| {
        let s = s.clone();
        async move {
            let p: CheckPubParams = named(params)?;
            check_pub(&s, p).await
        }
    });

    let s = shared;
    io.add_method("accept_invite", move |params: Params| {
        let s = s.clone();
        async move {
            let p: InviteParams = named(params)?;
            if p.invite.trim().is_empty() {
                return Err(invalid_params("invite: is empty"));
            }
            s.accept_invite(&p.invite).await.map_err(handle_error)?;
            Ok(Value::Bool(true))
        }
    });

    io
}

fn config_value(s: &Handle) -> Result<Value, Error> {
    let mut value = to_value(&*s.config())?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "config_path".into(),
            s.config_path()
                .map(|p| Value::from(p.display().to_string()))
                .unwrap_or(Value::Null),
        );
    }
    Ok(value)
}

/// Checks a label: locally first (an invalid or reserved label is
/// answered without asking the pub), then the pub's `/names/<label>`.
async fn check_name(s: &Handle, p: CheckNameParams) -> Result<Value, Error> {
    if let Err(e) = rules::check_name(&p.name, &[]) {
        return Ok(json!({
            "name": p.name,
            "available": false,
            "reason": e.to_string(),
            "yours": false,
        }));
    }
    let config = s.config();
    let pub_id: PublicKey = match (p.pub_id.as_deref(), config.registration.pub_id) {
        (Some(id), _) => id
            .parse()
            .map_err(|e| invalid_params(format!("pub_id: {e}")))?,
        (None, Some(configured)) => configured,
        (None, None) => {
            return Err(error(
                codes::NOT_CONFIGURED,
                "no pub given and none configured",
            ))
        }
    };
    let pubs = s.list_pubs().await.map_err(handle_error)?;
    let Some(pub_) = pubs.into_iter().find(|a| a.pub_id == pub_id) else {
        return Err(error(
            codes::UNKNOWN_PUB,
            format!("{pub_id} is not among the pubs this Pi knows (see list_pubs)"),
        ));
    };
    let fqdn = format!("{}.{}", p.name, pub_.domain);
    let answer = s
        .services()
        .pub_api
        .check_name(&pub_.url, &p.name)
        .await
        .map_err(|e: UpdateError| error(codes::PUB, e.to_string()))?;
    // Ours when this daemon's own state says it holds that name at that
    // pub (the pub no longer says who holds a name).
    let yours = s
        .status()
        .registered
        .is_some_and(|r| r.fqdn == fqdn && r.pub_id.parse::<PublicKey>().ok() == Some(pub_.pub_id));
    let mut out = match answer {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    // A pub that still says who holds a name is not repeated.
    out.remove("owner");
    out.insert("name".into(), Value::from(p.name));
    out.insert("fqdn".into(), Value::from(fqdn));
    out.insert("yours".into(), Value::Bool(yours));
    Ok(Value::Object(out))
}

/// Asks a listed pub's `GET /health`: whether it answers, and whether the
/// zone it serves is the one it announces.
async fn check_pub(s: &Handle, p: CheckPubParams) -> Result<Value, Error> {
    let pub_id: PublicKey = p
        .pub_id
        .parse()
        .map_err(|e| invalid_params(format!("pub_id: {e}")))?;
    let pubs = s.list_pubs().await.map_err(handle_error)?;
    let Some(pub_) = pubs.into_iter().find(|a| a.pub_id == pub_id) else {
        return Err(error(
            codes::UNKNOWN_PUB,
            format!("{pub_id} is not among the pubs this Pi knows (see list_pubs)"),
        ));
    };
    let mut out = serde_json::Map::new();
    out.insert("pub_id".into(), Value::from(pub_id.to_string()));
    out.insert("url".into(), Value::from(pub_.url.to_string()));
    match s.services().pub_api.health(&pub_.url).await {
        Ok(answer) => {
            out.insert("reachable".into(), Value::Bool(true));
            if let Some(domain) = answer.get("domain").and_then(Value::as_str) {
                let matches =
                    rules::normalize_domain(domain) == rules::normalize_domain(&pub_.domain);
                out.insert("domain".into(), Value::from(domain));
                out.insert("domain_matches".into(), Value::Bool(matches));
            }
        }
        Err(e) => {
            out.insert("reachable".into(), Value::Bool(false));
            out.insert("detail".into(), Value::from(e.to_string()));
        }
    }
    Ok(Value::Object(out))
}
