//! The real router and the real JSON-RPC handler, driven with
//! `warp::test::request()`, over a daemon whose side effects are fakes.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::routes;
use crate::daemon::Daemon;
use crate::fakes::{lock, World};
use crate::handle::Handle;
use crate::rpc::codes;

struct Harness {
    world: World,
    shared: Arc<Handle>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// A running daemon (loop and LED; no listener) whose config file says
    /// `text`.
    fn start_with(world: World, text: &str) -> Harness {
        let path = world.dir.path().join("daemon.toml");
        std::fs::write(&path, text).expect("write config");
        let config = crate::config::load(&path).expect("config");
        let daemon = Daemon::new(config, Some(path), world.services());
        let shared = daemon.handle();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(None, async {
            let _ = stop_rx.await;
        }));
        Harness {
            world,
            shared,
            stop: Some(stop),
            task,
        }
    }

    fn configured() -> Harness {
        let world = World::new();
        let text = config_text(&world, true);
        Harness::start_with(world, &text)
    }

    fn unconfigured() -> Harness {
        let world = World::new();
        let text = config_text(&world, false);
        Harness::start_with(world, &text)
    }

    async fn call(&self, method: &str, params: Option<Value>) -> Value {
        let mut body = json!({"jsonrpc": "2.0", "id": 7, "method": method});
        if let Some(p) = params {
            body["params"] = p;
        }
        let res = self.post("/rpc", "127.0.0.1:5116", &body.to_string()).await;
        assert_eq!(res.status(), 200, "{method}: {:?}", res.body());
        let value: Value = serde_json::from_slice(res.body()).expect("JSON answer");
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["id"], 7);
        value
    }

    async fn result(&self, method: &str, params: Option<Value>) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    async fn error_code(&self, method: &str, params: Option<Value>) -> (i64, String) {
        let v = self.call(method, params).await;
        let code = v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method}: no error in {v}"));
        (
            code,
            v["error"]["message"].as_str().unwrap_or("").to_string(),
        )
    }

    async fn post(
        &self,
        path: &str,
        host: &str,
        body: &str,
    ) -> warp::http::Response<warp::hyper::body::Bytes> {
        warp::test::request()
            .method("POST")
            .path(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(body)
            .reply(&routes(self.shared.clone()))
            .await
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }

    /// Waits (real time, briefly) until the loop reports `state`.
    async fn wait_for(&self, state: &str) {
        let mut rx = self.shared.subscribe();
        let want = state.to_string();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            rx.wait_for(|s| s.state.as_str() == want),
        )
        .await;
        assert!(
            r.is_ok(),
            "state never became {state}: {:?}",
            self.shared.status()
        );
    }
}

fn config_text(world: &World, registered: bool) -> String {
    let mut text = format!(
        "secret_path = {:?}\nstate_path = {:?}\n[rpc]\nallowed_hosts = [\"peach.local\"]\n",
        world.dir.path().join("secret"),
        world.dir.path().join("state.json"),
    );
    if registered {
        text.push_str(&format!(
            "[registration]\nname = \"eb4890\"\npub_id = \"{}\"\nurl = \"http://pub.test/update\"\ndomain = \"peach.dinosaur.is\"\n",
            world.pub_.keypair.id()
        ));
    }
    text
}

#[tokio::test]
async fn ping_status_and_is_online() {
    let h = Harness::configured();
    assert_eq!(h.result("ping", None).await, json!("success"));
    assert_eq!(h.result("ping", Some(json!([]))).await, json!("success"));
    assert_eq!(h.result("ping", Some(json!({}))).await, json!("success"));
    h.wait_for("online").await;
    assert_eq!(h.result("is_online", None).await, json!(true));
    let st = h.result("status", None).await;
    assert_eq!(st["state"], "online");
    assert_eq!(st["fqdn"], "eb4890.peach.dinosaur.is");
    assert_eq!(st["ip"], "24.12.12.12");
    assert_eq!(st["dns_verified"], true);
    assert_eq!(st["public_key"], json!(h.world.pi.id()));
    for key in [
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "next_check_at",
    ] {
        assert!(st.get(key).is_some(), "status has {key}: {st}");
    }
    h.stop().await;
}

#[tokio::test]
async fn unknown_methods_bad_params_and_bad_json() {
    let h = Harness::configured();
    assert_eq!(h.error_code("no_such_method", None).await.0, -32601);
    assert_eq!(h.error_code("ping", Some(json!([1]))).await.0, -32602);
    assert_eq!(
        h.error_code("status", Some(json!({"x": 1}))).await.0,
        -32602
    );
    assert_eq!(h.error_code("configure", Some(json!({}))).await.0, -32602);
    assert_eq!(
        h.error_code("configure", Some(json!(["eb4890"]))).await.0,
        -32602
    );
    let (code, msg) = h
        .error_code(
            "configure",
            Some(json!({"name": "eb4890", "pub_id": "x", "extra": 1})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("extra"), "{msg}");
    let (code, msg) = h
        .error_code(
            "configure",
            Some(json!({"name": "Not_Valid", "pub_id": h.world.pub_.keypair.id()})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("registration.name"), "{msg}");
    let (code, msg) = h
        .error_code(
            "configure",
            Some(json!({"name": "ok", "pub_id": "@nope.ed25519"})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("registration.pub_id"), "{msg}");
    assert_eq!(
        h.error_code("check_name", Some(json!(["eb4890"]))).await.0,
        -32602
    );
    // Params that are neither array nor object make the request invalid.
    assert_eq!(
        h.error_code("check_name", Some(json!("eb4890"))).await.0,
        -32600
    );
    assert_eq!(
        h.error_code("accept_invite", Some(json!({}))).await.0,
        -32602
    );

    let res = h.post("/rpc", "127.0.0.1", "{not json").await;
    let v: Value = serde_json::from_slice(res.body()).expect("json");
    assert_eq!(v["error"]["code"], -32700);
    let res = h
        .post("/rpc", "127.0.0.1", r#"{"jsonrpc":"2.0","method":"ping"}"#)
        .await;
    assert_eq!(res.status(), 204, "a notification gets no answer");
    // PeachCloud clients post to the root.
    let res = h
        .post(
            "/",
            "127.0.0.1",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await;
    let v: Value = serde_json::from_slice(res.body()).expect("json");
    assert_eq!(v["result"], "success");
    h.stop().await;
}

#[tokio::test]
async fn configure_writes_the_file_and_the_loop_registers() {
    let h = Harness::unconfigured();
    h.wait_for("unconfigured").await;
    assert_eq!(h.result("is_online", None).await, json!(false));
    let pub_id = h.world.pub_.keypair.id();
    let config = h
        .result(
            "configure",
            Some(json!({"name": "eb4890", "pub_id": pub_id,
                        "url": "http://pub.test/update", "domain": "peach.dinosaur.is"})),
        )
        .await;
    assert_eq!(config["registration"]["name"], "eb4890");
    assert!(config["config_path"]
        .as_str()
        .unwrap_or("")
        .ends_with("daemon.toml"));
    h.wait_for("online").await;
    let text = std::fs::read_to_string(h.world.dir.path().join("daemon.toml")).expect("read");
    assert!(text.contains("name = \"eb4890\""), "{text}");
    assert!(text.contains("allowed_hosts"), "other keys kept: {text}");
    let got = h.result("get_config", None).await;
    assert_eq!(got["registration"]["pub_id"], json!(pub_id));
    assert_eq!(h.world.pub_.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn update_now_answers_with_the_status_after_sending() {
    let h = Harness::configured();
    h.wait_for("online").await;
    let st = h.result("update_now", None).await;
    assert_eq!(st["state"], "online");
    assert_eq!(h.world.pub_.received().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn list_pubs_check_name_and_invites() {
    let h = Harness::configured();
    let other = peach_dyndns_protocol::identity::Keypair::generate().id();
    let content = json!({"type": "peach-dyndns", "domain": "other.example", "url": "http://other.test/update"});
    *lock(&h.world.directory.list) =
        crate::directory::latest_per_author(vec![(other.as_str(), 3, &content)], false);
    let pubs = h.result("list_pubs", None).await;
    assert_eq!(pubs.as_array().map(Vec::len), Some(2), "{pubs}");
    assert_eq!(pubs[0]["origin"], "config");
    assert_eq!(pubs[0]["domain"], "peach.dinosaur.is");
    assert_eq!(pubs[1]["pub_id"], json!(other));
    assert_eq!(pubs[1]["url"], "http://other.test/update");

    let r = h
        .result("check_name", Some(json!({"name": "Bad Name"})))
        .await;
    assert_eq!(r["available"], false);
    assert!(
        r["reason"].as_str().unwrap_or("").contains("lowercase"),
        "{r}"
    );
    let r = h.result("check_name", Some(json!({"name": "www"}))).await;
    assert_eq!(r["available"], false);
    let r = h
        .result(
            "check_name",
            Some(json!({"name": "free1", "pub_id": other})),
        )
        .await;
    assert_eq!(r["available"], true);
    assert_eq!(r["fqdn"], "free1.other.example");
    assert_eq!(r["yours"], false);
    h.wait_for("online").await;
    let r = h
        .result("check_name", Some(json!({"name": "eb4890"})))
        .await;
    assert_eq!(r["yours"], true, "{r}");
    // Regression: "yours" came from the pub's `owner` field (which a v2
    // pub no longer sends, and a hostile one could fake) or from the
    // configured name; now only from the name this daemon holds.
    *lock(&h.world.pub_.names) =
        json!({"available": false, "reason": "name_taken", "owner": h.world.pi.id()});
    let r = h
        .result("check_name", Some(json!({"name": "taken1"})))
        .await;
    assert_eq!(r["yours"], false, "{r}");
    assert!(r.get("owner").is_none(), "{r}");
    let unknown = peach_dyndns_protocol::identity::Keypair::generate().id();
    let (code, _) = h
        .error_code("check_name", Some(json!({"name": "x", "pub_id": unknown})))
        .await;
    assert_eq!(code, codes::UNKNOWN_PUB);

    let invite = format!("127.0.0.1:8008:{other}~seed");
    assert_eq!(
        h.result("accept_invite", Some(json!({"invite": invite})))
            .await,
        json!(true)
    );
    assert_eq!(*lock(&h.world.directory.invites), vec![invite]);
    let (code, _) = h
        .error_code("accept_invite", Some(json!({"invite": "garbage"})))
        .await;
    assert_eq!(code, codes::INVITE);
    h.stop().await;
}

/// DNS rebinding and cross-site requests are refused; loopback and the
/// configured name pass; no CORS header is ever sent.
#[tokio::test]
async fn host_origin_and_content_type_are_checked() {
    let h = Harness::configured();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for host in [
        "127.0.0.1:5116",
        "localhost:5116",
        "[::1]:5116",
        "peach.local",
        "PEACH.LOCAL:80",
        "127.0.0.2",
    ] {
        let res = h.post("/rpc", host, ping).await;
        assert_eq!(res.status(), 200, "{host}");
    }
    for host in [
        "evil.example",
        "evil.example:5116",
        "127.0.0.1.evil.example",
        "peach.local.evil",
    ] {
        let res = h.post("/rpc", host, ping).await;
        assert_eq!(res.status(), 403, "{host}");
    }
    let routes = routes(h.shared.clone());
    let no_host = warp::test::request()
        .method("POST")
        .path("/rpc")
        .header("content-type", "application/json")
        .body(ping)
        .reply(&routes)
        .await;
    assert_eq!(no_host.status(), 403);
    for (origin, want) in [
        ("http://evil.example", 403),
        ("null", 403),
        ("http://127.0.0.1:5116", 200),
        ("http://peach.local", 200),
    ] {
        let res = warp::test::request()
            .method("POST")
            .path("/rpc")
            .header("host", "127.0.0.1:5116")
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(ping)
            .reply(&routes)
            .await;
        assert_eq!(res.status(), want, "{origin}");
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }
    let text_plain = warp::test::request()
        .method("POST")
        .path("/rpc")
        .header("host", "127.0.0.1:5116")
        .header("content-type", "text/plain")
        .body(ping)
        .reply(&routes)
        .await;
    assert_eq!(text_plain.status(), 415);
    let preflight = warp::test::request()
        .method("OPTIONS")
        .path("/rpc")
        .header("host", "127.0.0.1:5116")
        .header("origin", "http://127.0.0.1:5116")
        .header("access-control-request-method", "POST")
        .reply(&routes)
        .await;
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_ne!(preflight.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn the_panel_is_served_with_a_strict_policy() {
    let h = Harness::configured();
    let routes = routes(h.shared.clone());
    for (path, ctype, needle) in [
        ("/", "text/html", "Dynamic DNS"),
        ("/panel.css", "text/css", ".dot"),
        ("/panel.js", "text/javascript", "check_name"),
    ] {
        let res = warp::test::request()
            .path(path)
            .header("host", "127.0.0.1:5116")
            .reply(&routes)
            .await;
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with(ctype),
            "{path}"
        );
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap_or("")
            .contains("default-src 'none'"));
        assert!(headers.get("access-control-allow-origin").is_none());
        assert!(
            String::from_utf8_lossy(res.body()).contains(needle),
            "{path}"
        );
    }
    let evil = warp::test::request()
        .path("/")
        .header("host", "evil.example")
        .reply(&routes)
        .await;
    assert_eq!(evil.status(), 403);
    let missing = warp::test::request()
        .path("/nope")
        .header("host", "127.0.0.1")
        .reply(&routes)
        .await;
    assert_eq!(missing.status(), 404);
    h.stop().await;
}

/// SIGHUP's reload: a good file is applied, a bad one refused with the
/// running config kept.
#[tokio::test]
async fn reload_applies_a_good_file_and_keeps_the_config_on_a_bad_one() {
    let h = Harness::unconfigured();
    let path = h.world.dir.path().join("daemon.toml");
    std::fs::write(&path, config_text(&h.world, true)).expect("write");
    h.shared.reload().expect("reload");
    h.wait_for("online").await;
    std::fs::write(&path, "check_interval_secs = \"soon\"\n").expect("write");
    let err = h.shared.reload().expect_err("bad file").to_string();
    assert!(err.contains("check_interval_secs"), "{err}");
    assert_eq!(
        h.shared.config().registration.name.as_deref(),
        Some("eb4890")
    );
    h.stop().await;
}

/// The panel's own methods: `events` (the loop's bounded log), `release`
/// (only with `confirm: true`; the name leaves the config and the state),
/// and `check_pub` (a pub API without a health check says so).
#[tokio::test]
async fn events_release_and_check_pub() {
    let h = Harness::configured();
    h.wait_for("online").await;
    let events = h.result("events", None).await;
    let kinds: Vec<&str> = events
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"accepted"), "{events}");
    assert!(events[0]["at"].as_u64().is_some_and(|t| t > 0), "{events}");
    assert_eq!(
        h.error_code("events", Some(json!({"x": 1}))).await.0,
        -32602
    );

    let (code, message) = h.error_code("release", None).await;
    assert_eq!(code, -32602, "{message}");
    let (code, message) = h
        .error_code("release", Some(json!({"confirm": false})))
        .await;
    assert_eq!(code, -32602, "{message}");
    assert!(message.contains("confirm"), "{message}");
    assert_eq!(
        h.shared.config().registration.name.as_deref(),
        Some("eb4890"),
        "a refused release changes nothing"
    );

    let status = h.result("release", Some(json!({"confirm": true}))).await;
    assert_eq!(status["registered"], Value::Null, "{status}");
    assert_eq!(status["online"], false, "{status}");
    assert_eq!(h.shared.config().registration.name, None);
    assert!(
        h.shared.config().registration.pub_id.is_some(),
        "the pub stays chosen"
    );
    let events = h.result("events", None).await;
    assert_eq!(events[0]["kind"], "released", "{events}");
    let (code, message) = h
        .error_code("release", Some(json!({"confirm": true})))
        .await;
    assert_eq!(code, codes::RELEASE, "{message}");
    assert!(message.contains("holds no name"), "{message}");

    let pub_id = h
        .shared
        .config()
        .registration
        .pub_id
        .expect("pub")
        .to_string();
    let answer = h.result("check_pub", Some(json!({"pub_id": pub_id}))).await;
    assert_eq!(answer["reachable"], false, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("health")),
        "{answer}"
    );
    let other = peach_dyndns_protocol::identity::Keypair::generate().id();
    assert_eq!(
        h.error_code("check_pub", Some(json!({"pub_id": other})))
            .await
            .0,
        codes::UNKNOWN_PUB
    );
    h.stop().await;
}

/// The panel names its files and the RPC relatively, so it works mounted
/// under a sub-path (peach-web's nginx `location /dyndns/`).
#[test]
fn the_panel_uses_relative_urls_only() {
    for (name, text) in [
        ("index.html", super::INDEX_HTML),
        ("panel.js", super::PANEL_JS),
        ("panel.css", super::PANEL_CSS),
    ] {
        for absolute in [
            "href=\"/",
            "src=\"/",
            "fetch(\"/",
            "url(/",
            "url(\"/",
            "http://",
            "//cdn",
        ] {
            assert!(!text.contains(absolute), "{name} contains {absolute:?}");
        }
    }
    assert!(super::PANEL_JS.contains("fetch(\"rpc\""));
    assert!(super::INDEX_HTML.contains("href=\"panel.css\""));
    assert!(super::INDEX_HTML.contains("src=\"panel.js\""));
}
