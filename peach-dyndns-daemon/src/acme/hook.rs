//! `peach-dyndns-daemon acme-hook set|clear`: the DNS-01 step for ACME
//! clients the owner already runs (certbot, acme.sh, lego), through the
//! same signed `acme_set`/`acme_clear` as the daemon's own client.
//!
//! Where the name and value come from, in this order:
//! - arguments: `acme-hook set|clear <domain> <value>` (acme.sh's dnsapi
//!   functions get them as `$1 $2`; lego's `exec` provider calls its
//!   program with `present|cleanup <fqdn> <value>`, also accepted);
//! - certbot's `CERTBOT_DOMAIN` and `CERTBOT_VALIDATION`.
//!
//! The domain may be the name, `*.name` or `_acme-challenge.name.` (with or
//! without the final dot); it must be this Pi's name at its pub. An order
//! for the name and `*.name` calls the hook twice with two values for one
//! TXT name, so the values set in the last ten minutes are kept in
//! `<cert_dir>/hook-values.json` and sent together; `clear` takes one
//! value away (none left: `acme_clear`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::files;
use super::signer::{ChallengeSigner, ChallengeTarget};
use super::target_of;
use crate::config::Config;
use crate::pubapi::{http_client, HttpPubApi};
use crate::secret::load_secret;
use crate::state::StateStore;
use crate::status::{unix_ms, Status};

/// How long a value set through the hook is kept for the next call: an
/// order's validation takes seconds; a certbot that died leaves nothing
/// behind for long (the pub forgets them too).
const KEEP_VALUES: u64 = 600;
/// Values at most in one `acme_set` (the protocol's limit).
const MAX_VALUES: usize = 2;

/// What the hook is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOp {
    /// Add a value (`set`, certbot's auth hook, lego's `present`).
    Set,
    /// Take a value away (`clear`, certbot's cleanup hook, lego's `cleanup`).
    Clear,
}

/// One call of the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    /// Set or clear.
    pub op: HookOp,
    /// The name the CA validates, normalised (`eb4890.peach.dinosaur.is`).
    pub domain: String,
    /// The TXT value (none: clear every value).
    pub value: Option<String>,
}

/// Reads the call from the arguments after `acme-hook` and the environment.
pub fn parse_call(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<HookCall, String> {
    let usage = "usage: peach-dyndns-daemon acme-hook set|clear [<domain> [<value>]] \
                 (or CERTBOT_DOMAIN and CERTBOT_VALIDATION in the environment)";
    let (op, rest) = match args.split_first() {
        Some((op, rest)) => (op.as_str(), rest),
        None => return Err(usage.into()),
    };
    let op = match op {
        "set" | "present" | "auth" => HookOp::Set,
        "clear" | "cleanup" => HookOp::Clear,
        other => return Err(format!("unknown hook action {other:?}; {usage}")),
    };
    let (domain, value) = match rest {
        [] => (env("CERTBOT_DOMAIN"), env("CERTBOT_VALIDATION")),
        [domain] => (Some(domain.clone()), env("CERTBOT_VALIDATION")),
        [domain, value] => (Some(domain.clone()), Some(value.clone())),
        _ => return Err(format!("too many arguments; {usage}")),
    };
    let domain = domain
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| format!("no domain given; {usage}"))?;
    let value = value.filter(|v| !v.is_empty());
    if op == HookOp::Set && value.is_none() {
        return Err(format!("`set` needs the TXT value; {usage}"));
    }
    Ok(HookCall {
        op,
        domain: normalize(&domain),
        value,
    })
}

/// `_acme-challenge.X.`, `*.X` and `X` all mean `X`, lower case.
pub fn normalize(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let d = d.strip_prefix("_acme-challenge.").unwrap_or(&d);
    let d = d.strip_prefix("*.").unwrap_or(d);
    d.to_string()
}

/// `hook-values.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeptValues {
    /// The name they are for.
    domain: String,
    /// Value and when it was set (Unix seconds), oldest first.
    values: Vec<(String, u64)>,
}

/// Runs one hook call with `config`; returns what was done, for a person.
pub async fn run(config: &Config, call: &HookCall) -> Result<String, String> {
    let target = find_target(config).await?;
    if call.domain != target.fqdn() {
        return Err(format!(
            "{} is not this Pi's name ({}): the pub only sets challenges for the name this key holds",
            call.domain,
            target.fqdn()
        ));
    }
    let keypair = load_secret(&config.secret_path).map_err(|e| e.to_string())?;
    let last = StateStore::new(&config.state_path)
        .load()
        .ok()
        .and_then(|s| s.seq(&target.pub_id));
    let client =
        http_client(config.http_timeout(), config.acme.ca_file()).map_err(|e| e.to_string())?;
    let mut signer = ChallengeSigner::new(
        keypair,
        std::sync::Arc::new(HttpPubApi::new(client)),
        std::sync::Arc::new(unix_ms),
        last,
    );
    let path = kept_path(config);
    let now = files::unix_now();
    let mut kept: KeptValues = files::read_optional(&path)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|k: &KeptValues| k.domain == call.domain)
        .unwrap_or_default();
    kept.domain = call.domain.clone();
    kept.values
        .retain(|(_, at)| now.saturating_sub(*at) < KEEP_VALUES);
    match (&call.op, &call.value) {
        (HookOp::Set, Some(value)) => {
            kept.values.retain(|(v, _)| v != value);
            kept.values.push((value.clone(), now));
            while kept.values.len() > MAX_VALUES {
                kept.values.remove(0);
            }
        }
        (HookOp::Clear, Some(value)) => kept.values.retain(|(v, _)| v != value),
        (_, None) => kept.values.clear(),
    }
    let values: Vec<String> = kept.values.iter().map(|(v, _)| v.clone()).collect();
    let answer = if values.is_empty() {
        signer.clear(&target).await
    } else {
        signer.set(&target, &values).await
    }
    .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        let _ = files::ensure_dir(dir);
    }
    let json = serde_json::to_vec(&kept).map_err(|e| e.to_string())?;
    if let Err(e) = files::write_atomically(&path, &json, 0o600) {
        tracing::warn!(error = %e, "cannot keep the hook's values; a second value would replace the first");
    }
    Ok(format!(
        "_acme-challenge.{} now answers {} value(s) (seq {})",
        target.fqdn(),
        values.len(),
        answer.seq
    ))
}

fn kept_path(config: &Config) -> PathBuf {
    config.acme.cert_dir.join("hook-values.json")
}

/// The pub and name: from the running daemon's status (it knows the
/// announced pub), else from a config that names the pub completely.
async fn find_target(config: &Config) -> Result<ChallengeTarget, String> {
    if let Some(target) = ask_daemon(config).await {
        return Ok(target);
    }
    let reg = &config.registration;
    match (&reg.name, &reg.pub_id, &reg.url, &reg.domain) {
        (Some(name), Some(pub_id), Some(url), Some(domain)) => Ok(ChallengeTarget {
            pub_id: *pub_id,
            url: url.clone(),
            domain: domain.clone(),
            name: name.clone(),
        }),
        _ => Err(format!(
            "the daemon does not answer at {} and the config does not name the pub \
             completely ([registration] name, pub_id, url, domain)",
            config.rpc.listen
        )),
    }
}

/// The target from the running daemon's `status`, if it answers and the
/// pub accepted the name.
async fn ask_daemon(config: &Config) -> Option<ChallengeTarget> {
    let mut addr = config.rpc.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let status: Status = serde_json::from_value(rpc_status(addr).await?).ok()?;
    target_of(&status)
}

/// The `status` JSON-RPC result of the daemon listening at `addr`, if it
/// answers within 3 s.
pub async fn rpc_status(addr: std::net::SocketAddr) -> Option<serde_json::Value> {
    let client = http_client(Duration::from_secs(3), None).ok()?;
    let answer: serde_json::Value = client
        .post(format!("http://{addr}/rpc"))
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "status"}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer.get("result").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_certbot_acme_sh_and_lego_calls() {
        let value = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
        let certbot = [
            ("CERTBOT_DOMAIN", "EB4890.peach.dinosaur.is"),
            ("CERTBOT_VALIDATION", value),
        ];
        let call = parse_call(&["set".into()], env(&certbot)).expect("certbot");
        assert_eq!(
            call,
            HookCall {
                op: HookOp::Set,
                domain: "eb4890.peach.dinosaur.is".into(),
                value: Some(value.into())
            }
        );
        let call = parse_call(&["clear".into()], env(&certbot)).expect("certbot cleanup");
        assert_eq!(call.op, HookOp::Clear);
        // lego exec: present <fqdn with the label and a dot> <value>.
        let lego = parse_call(
            &[
                "present".into(),
                "_acme-challenge.eb4890.peach.dinosaur.is.".into(),
                value.into(),
            ],
            env(&[]),
        )
        .expect("lego");
        assert_eq!(lego.domain, "eb4890.peach.dinosaur.is");
        // acme.sh: set <fulldomain> <value>; a wildcard's name is the base.
        let acme_sh = parse_call(
            &[
                "set".into(),
                "*.eb4890.peach.dinosaur.is".into(),
                value.into(),
            ],
            env(&[]),
        )
        .expect("acme.sh");
        assert_eq!(acme_sh.domain, "eb4890.peach.dinosaur.is");
        for bad in [
            &[][..],
            &["bogus".to_string()][..],
            &["set".to_string()][..],
        ] {
            assert!(parse_call(bad, env(&[])).is_err(), "{bad:?}");
        }
    }
}
