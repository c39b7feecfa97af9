//! Shared helpers: a server state on temp files, signed and sealed updates.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::{Op, UpdateMsg};
use peach_dyndns_protocol::seal;
use peach_dyndns_server::config::Config;
use peach_dyndns_server::graph::{Allowlist, SocialGraph};
use peach_dyndns_server::registry::Registry;
use peach_dyndns_server::{dns, State};
use tempfile::TempDir;
use testkit::ServerConfig;
use warp::http::HeaderMap;

pub const DOMAIN: &str = "peach.dinosaur.is";

/// A pub: its keypair, its state, and the temp dir holding its files.
pub struct Pub {
    pub keypair: Keypair,
    pub state: Arc<State>,
    pub embedded: Option<Arc<dns::EmbeddedDns>>,
    /// Holds the secret and the registry until the test ends.
    #[allow(dead_code)]
    pub dir: TempDir,
}

/// A config with `top` TOML after the top-level keys and `tables` at the end.
pub fn config(dir: &Path, top: &str, tables: &str) -> Config {
    let mut text = ServerConfig::new(DOMAIN)
        .listen("127.0.0.1:0")
        .secret(dir.join("secret"))
        .database(dir.join("registry.sqlite3"));
    // Tests use documentation and loopback addresses unless they say otherwise.
    if !top.contains("allow_private_addresses") {
        text = text.allow_private_addresses(true);
    }
    // The operator's socket in the test's own dir, never the system's.
    if !top.contains("control_socket") {
        text = text.top(&format!(
            "control_socket = {}",
            testkit::toml_string(dir.join("control.sock").display())
        ));
    }
    let text = text.top(top).table(tables).to_toml();
    Config::from_str(&text, Path::new("test.toml")).expect("test config is valid")
}

/// A pub on the embedded DNS, letting `allowed` update.
pub fn embedded_pub(allowed: &[&Keypair], top: &str) -> Pub {
    let graph = Arc::new(Allowlist::new(allowed.iter().map(|k| k.public())));
    pub_with(graph, top, "")
}

/// A pub with the given graph and config.
pub fn pub_with(graph: Arc<dyn SocialGraph>, top: &str, tables: &str) -> Pub {
    let dir = tempfile::tempdir().expect("tmp");
    let keypair = Keypair::generate();
    testkit::write_secret(&dir.path().join("secret"), &keypair.to_secret_file());
    let config = config(dir.path(), top, tables);
    let registry = Registry::open(&config.database).expect("registry");
    let backend = dns::build(&config.dns, &config.domain).expect("dns backend");
    let state = Arc::new(State::new(
        config,
        keypair.clone(),
        registry,
        backend.zone,
        graph,
    ));
    Pub {
        keypair,
        state,
        embedded: backend.embedded,
        dir,
    }
}

/// An update message for `name` → `ip`.
pub fn update(kp: &Keypair, name: &str, ip: Ipv4Addr, seq: u64) -> UpdateMsg {
    UpdateMsg {
        op: Op::Update,
        name: name.into(),
        domain: DOMAIN.into(),
        ip: Some(ip),
        ip6: None,
        // Set to the pub it is sent to by `body`.
        pub_id: kp.public(),
        public_key: kp.public(),
        seq,
        token_sha256: None,
        txt: None,
    }
}

/// Binds `msg` to the pub `to` (its `pub` field), signs it with `kp` and
/// seals it to that pub: the request body.
pub fn body(msg: &UpdateMsg, kp: &Keypair, to: &Keypair) -> Vec<u8> {
    let msg = UpdateMsg {
        pub_id: to.public(),
        ..msg.clone()
    };
    body_as_is(&msg, kp, to)
}

/// Signs `msg` exactly as it is (its `pub` field untouched) and seals it
/// to `to`.
pub fn body_as_is(msg: &UpdateMsg, kp: &Keypair, to: &Keypair) -> Vec<u8> {
    let envelope = seal::seal_update(&msg.sign(kp), &to.public()).expect("seal");
    serde_json::to_vec(&envelope).expect("json")
}

/// Posts a body to `/update` through the real router.
pub async fn post(state: &Arc<State>, body: &[u8]) -> (u16, serde_json::Value, HeaderMap) {
    let resp = warp::test::request()
        .method("POST")
        .path("/update")
        .header("content-type", "application/json")
        .remote_addr("127.0.0.1:40000".parse().expect("addr"))
        .body(body)
        .reply(&peach_dyndns_server::api::routes(state.clone()))
        .await;
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status().as_u16(), json, resp.headers().clone())
}

/// GETs a path through the real router.
pub async fn get(state: &Arc<State>, path: &str) -> (u16, String) {
    let resp = warp::test::request()
        .method("GET")
        .path(path)
        .remote_addr("24.12.12.12:40000".parse().expect("addr"))
        .reply(&peach_dyndns_server::api::routes(state.clone()))
        .await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).to_string(),
    )
}
