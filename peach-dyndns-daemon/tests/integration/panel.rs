//! The web panel in real headless Chromium (driven through chromedriver's
//! W3C WebDriver API), against the daemon's real listener on 127.0.0.1:0
//! and the real peach-dyndns-server in-process (embedded DNS, allowlist):
//! setup with live name checks through to the green dot and `dig`, the
//! pub going away and coming back, a pub that refuses the key, and the
//! DNS-rebinding guard as a browser meets it.
//!
//! Screenshots go to the Pi's temp dir; set `PEACH_DYNDNS_PANEL_SHOTS` to a
//! directory to keep copies there (to look at the page yourself).

use std::path::Path;
use std::time::Duration;

use peach_dyndns_daemon::daemon::{once, real_services};
use serde_json::{json, Value};

use crate::common::*;
use crate::webdriver::Browser;

/// Page load, first `status` and `list_pubs` answers.
const LOAD: Duration = Duration::from_secs(15);
/// A name check: 300 ms of typing pause, then the daemon asks the pub.
const CHECK: Duration = Duration::from_secs(10);
/// Save to green dot: `configure`, `update_now`, the DNS check, and the
/// panel's next 5 s status poll.
const TO_GREEN: Duration = Duration::from_secs(25);
/// An update against a stopped pub fails at once (connection refused);
/// the daemon's HTTP timeout in these configs is 2 s.
const TO_ERROR: Duration = Duration::from_secs(15);

/// The panel's words for each state (`WORDS` in `src/panel/panel.js`).
const ONLINE_WORDS: &str = "Online: the name points at this Pi";
const UNCONFIGURED_WORDS: &str = "Not set up yet";
/// `--ok` in `panel.css`: the green dot, as the browser computes it.
const GREEN: &str = "rgb(26, 127, 55)";
/// `--bad` in `panel.css`.
const RED: &str = "rgb(198, 40, 40)";

/// Everything a person sees of the panel, read in one script.
const SNAPSHOT: &str = r#"
const $ = (id) => document.getElementById(id);
const dot = $("dot");
if (!dot) return null;
const box = dot.getBoundingClientRect();
const msg = (id) => ({ text: $(id).textContent, class: $(id).className });
const err = $("error");
return {
  dot: dot.className,
  dot_color: getComputedStyle(dot).backgroundColor,
  dot_size: [box.width, box.height],
  state: $("state").textContent,
  fqdn: $("fqdn").textContent,
  addresses: $("addresses").textContent,
  dns: $("dns").textContent,
  last_success: $("last-success").textContent,
  next_check: $("next-check").textContent,
  error: err.hidden ? null : err.textContent,
  error_color: getComputedStyle(err).color,
  pubs: Array.from($("pub").options).map((o) => o.textContent),
  suffix: $("suffix").textContent,
  name_msg: msg("name-msg"),
  pub_msg: msg("pub-msg"),
  save_msg: msg("save-msg"),
};
"#;

/// Waits until the panel's snapshot satisfies `pred`.
async fn wait_panel(
    b: &Browser,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    b.wait_script(what, timeout, SNAPSHOT, |p| !p.is_null() && pred(p))
        .await
}

/// Saves a screenshot into `dir` (and into `$PEACH_DYNDNS_PANEL_SHOTS`).
async fn shot(b: &Browser, dir: &Path, name: &str) {
    let path = dir.join(name);
    let bytes = b.screenshot(&path).await;
    // A blank 900×1400 window compresses to a few KB; the panel's text
    // makes it many times larger.
    assert!(bytes > 10_000, "{name}: only {bytes} bytes, a blank page?");
    if let Some(keep) = std::env::var_os("PEACH_DYNDNS_PANEL_SHOTS") {
        let keep = Path::new(&keep).join(name);
        std::fs::copy(&path, &keep)
            .unwrap_or_else(|e| panic!("copying the screenshot to {}: {e}", keep.display()));
    }
}

/// A Pi config that names the pub (so `list_pubs` offers it without a
/// local sbot) but no subdomain: the daemon is unconfigured.
fn unconfigured(pi: &Pi, pub_: &TestPub) -> String {
    let full = pi.config_text(pub_, "", "");
    let text = full.replace("name = \"eb4890\"\n", "");
    assert_ne!(text, full, "the name line is gone");
    text
}

/// Types `label` into the subdomain field and waits for the live check.
async fn check_name_live(b: &Browser, label: &str, pred: impl Fn(&str, &str) -> bool) -> Value {
    let field = b.find("#name").await;
    field.clear().await;
    field.send_keys(label).await;
    let p = wait_panel(b, &format!("the availability of {label:?}"), CHECK, |p| {
        let text = p["name_msg"]["text"].as_str().unwrap_or_default();
        text != "Checking…"
            && !text.is_empty()
            && pred(text, p["name_msg"]["class"].as_str().unwrap_or_default())
    })
    .await;
    p["name_msg"].clone()
}

/// Scenarios 1 and 2: an unconfigured Pi sets itself up in the panel
/// (pub from the list, live availability against the real pub, save) and
/// the dot goes green with `is_online` and `dig` agreeing; the pub stops
/// and the panel says so in words; the pub returns and the dot is green
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_setup_goes_green_and_shows_the_pub_going_away() {
    let pi = Pi::new();
    let other = Pi::new();
    let mut pub_ = TestPub::start(&[&pi.keypair, &other.keypair]).await;
    // Another Pi holds "taken1" at the pub.
    let config = other.write_config(&other.config_text(&pub_, "", "").replace("eb4890", "taken1"));
    let outcome = once(&config, real_services(&config).expect("services")).await;
    assert_eq!(outcome.exit_code, 0, "{:#?}", outcome.status);

    let config = pi.write_config(&unconfigured(&pi, &pub_));
    let mut d = RunningDaemon::start(&pi, config).await;
    let b = Browser::start(&[]).await;
    b.goto(&format!("http://127.0.0.1:{}/", d.rpc.port())).await;

    // Unconfigured: grey dot and words, the pub offered, the setup form.
    let p = wait_panel(&b, "the first status and the pub list", LOAD, |p| {
        p["state"] != "Loading…" && p["pubs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(p["dot"], "dot unconfigured", "{p:#}");
    assert_eq!(p["state"], UNCONFIGURED_WORDS, "{p:#}");
    assert_ne!(p["dot_color"], GREEN, "{p:#}");
    assert_eq!(d.result("is_online", None).await, json!(false));
    let pubs = p["pubs"].as_array().expect("pubs");
    assert_eq!(pubs.len(), 1, "{p:#}");
    assert!(
        pubs[0].as_str().is_some_and(|s| s.starts_with(DOMAIN)),
        "{p:#}"
    );
    assert_eq!(p["suffix"], format!(".{DOMAIN}"), "{p:#}");
    assert_eq!(p["error"], Value::Null, "{p:#}");
    assert_eq!(
        b.execute("return document.title;", json!([])).await,
        "Dynamic DNS · PeachCloud"
    );
    assert_eq!(b.find("#setup-heading").await.text().await, "Setup");
    assert_eq!(b.find("#state").await.text().await, UNCONFIGURED_WORDS);
    shot(&b, pi.dir.path(), "panel-unconfigured.png").await;

    // Live availability, as the owner types, from the real pub.
    let m = check_name_live(&b, "free1", |t, _| t.contains("free1")).await;
    assert_eq!(m["text"], format!("free1.{DOMAIN} is available."));
    assert_eq!(m["class"], "msg ok");
    let m = check_name_live(&b, "taken1", |t, _| t.contains("taken1")).await;
    let text = m["text"].as_str().unwrap_or_default();
    assert_eq!(m["class"], "msg bad", "{m}");
    assert!(
        text.starts_with(&format!("taken1.{DOMAIN} is not available")),
        "{m}"
    );
    // In words a person reads, not the wire code.
    assert!(
        !text.contains("name_taken"),
        "the panel shows the wire code: {m}"
    );
    assert_eq!(
        text,
        format!("taken1.{DOMAIN} is not available: another Pi has registered it")
    );
    let m = check_name_live(&b, "-bad-", |t, _| t.contains("-bad-")).await;
    assert_eq!(m["class"], "msg bad", "{m}");
    assert!(
        m["text"]
            .as_str()
            .unwrap_or_default()
            .contains("not available"),
        "{m}"
    );
    assert!(
        m["text"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid name"),
        "{m}"
    );
    let m = check_name_live(&b, "www", |t, _| t.contains("www")).await;
    assert_eq!(m["class"], "msg bad", "{m}");
    assert!(
        m["text"].as_str().unwrap_or_default().contains("reserved"),
        "{m}"
    );
    let m = check_name_live(&b, "eb4890", |t, _| t.contains("eb4890")).await;
    assert_eq!(m["text"], format!("eb4890.{DOMAIN} is available."));

    // Save: configure, then update_now; the dot turns green.
    b.find("#setup-form button[type=submit]")
        .await
        .click()
        .await;
    let p = wait_panel(&b, "the green dot", TO_GREEN, |p| p["dot"] == "dot online").await;
    assert_eq!(p["state"], ONLINE_WORDS, "{p:#}");
    assert_eq!(p["dot_color"], GREEN, "{p:#}");
    assert!(
        p["dot_size"][0].as_f64().unwrap_or(0.0) >= 10.0
            && p["dot_size"][1].as_f64().unwrap_or(0.0) >= 10.0,
        "the dot is visible: {p:#}"
    );
    assert_eq!(p["save_msg"]["text"], "Saved.", "{p:#}");
    assert_eq!(p["fqdn"], format!("eb4890.{DOMAIN}"), "{p:#}");
    assert_eq!(p["addresses"], "127.0.0.1", "{p:#}");
    assert_eq!(p["dns"], "answers with this address", "{p:#}");
    assert_ne!(p["last_success"], "—", "{p:#}");
    assert_eq!(p["error"], Value::Null, "{p:#}");
    assert_eq!(b.find("#state").await.text().await, ONLINE_WORDS);
    assert_eq!(
        b.find("#dot").await.attr("class").await.as_deref(),
        Some("dot online")
    );
    // The dot is what the JSON-RPC says, and the pub's DNS answers.
    assert_eq!(d.result("is_online", None).await, json!(true));
    assert_eq!(
        testkit::dig(pub_.dns, &format!("eb4890.{DOMAIN}"), "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );
    let written = std::fs::read_to_string(pi.config_path()).expect("config");
    assert!(written.contains("name = \"eb4890\""), "{written}");
    // Now it is ours (the field still holds "eb4890": wait for the new words).
    let m = check_name_live(&b, "eb4890", |t, _| t.contains("already yours")).await;
    assert_eq!(m["text"], format!("eb4890.{DOMAIN} is already yours."));
    shot(&b, pi.dir.path(), "panel-online.png").await;

    // Scenario 2: the pub goes away; "Update now" shows the error in words.
    pub_.stop().await;
    b.find("#update-now").await.click().await;
    let p = wait_panel(&b, "the error state", TO_ERROR, |p| p["dot"] == "dot error").await;
    assert_eq!(p["state"], "Error", "{p:#}");
    assert_eq!(p["dot_color"], RED, "{p:#}");
    // The Pi asks the pub's /ip first (the default), so that is what
    // fails: the words name the pub and that it cannot be reached.
    let error = p["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("http://{}/", pub_.http)) && error.contains("cannot connect"),
        "{p:#}"
    );
    assert!(
        !error.contains("undefined") && !error.contains("[object"),
        "{p:#}"
    );
    assert_eq!(p["error_color"], RED, "{p:#}");
    assert_eq!(
        b.find("#error").await.text().await,
        error,
        "the error is shown"
    );
    assert_ne!(p["next_check"], "—", "a retry is scheduled: {p:#}");
    assert_eq!(d.result("is_online", None).await, json!(false));
    shot(&b, pi.dir.path(), "panel-error.png").await;

    // It comes back: green again, the error gone.
    pub_.restart().await;
    b.find("#update-now").await.click().await;
    let p = wait_panel(&b, "green again", TO_GREEN, |p| p["dot"] == "dot online").await;
    assert_eq!(p["error"], Value::Null, "{p:#}");
    assert_eq!(d.result("is_online", None).await, json!(true));

    b.quit().await;
    d.stop().await;
}

/// Scenario 2, the other way: the pub does not follow this Pi. The panel
/// says so in the pub's words, and that retrying waits for a setup change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_explains_a_pub_that_refuses_the_key() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[]).await;
    let config = pi.write_config(&unconfigured(&pi, &pub_));
    let mut d = RunningDaemon::start(&pi, config).await;
    let b = Browser::start(&[]).await;
    b.goto(&format!("http://localhost:{}/", d.rpc.port())).await;
    wait_panel(&b, "the pub list", LOAD, |p| {
        p["pubs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let m = check_name_live(&b, "eb4890", |t, _| t.contains("eb4890")).await;
    assert_eq!(m["class"], "msg ok", "{m}");
    b.find("#setup-form button[type=submit]")
        .await
        .click()
        .await;

    let p = wait_panel(&b, "the refusal", TO_ERROR, |p| p["dot"] == "dot error").await;
    assert_eq!(p["state"], "Error", "{p:#}");
    let error = p["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not follow") && error.contains("ask the pub for an invite"),
        "{p:#}"
    );
    assert_eq!(p["next_check"], "after the setup changes", "{p:#}");
    assert_eq!(d.result("is_online", None).await, json!(false));
    assert!(testkit::dig(pub_.dns, &format!("eb4890.{DOMAIN}"), "A")
        .time_secs(1)
        .short()
        .is_empty());
    shot(&b, pi.dir.path(), "panel-refused.png").await;

    b.quit().await;
    d.stop().await;
}

/// Scenario 3: a page reached under a foreign name that resolves to
/// loopback (DNS rebinding) gets a 403 and no panel, and its script cannot
/// use the JSON-RPC, same-origin or cross-origin; loopback names work in
/// the same browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_refuses_a_foreign_host_in_the_browser() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[&pi.keypair]).await;
    let config = pi.write_config(&unconfigured(&pi, &pub_));
    let mut d = RunningDaemon::start(&pi, config).await;
    let port = d.rpc.port();
    let b = Browser::start(&["--host-resolver-rules=MAP evil.example 127.0.0.1"]).await;

    b.goto(&format!("http://evil.example:{port}/")).await;
    assert_eq!(b.url().await, format!("http://evil.example:{port}/"));
    let nav = b
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return n ? n.responseStatus : null;",
            json!([]),
        )
        .await;
    assert_eq!(nav, json!(403), "the page is refused");
    let body = b.body_text().await;
    assert!(body.contains("forbidden"), "{body}");
    assert!(b.try_find("#dot").await.is_none(), "no panel: {body}");

    // The rebound page's own script, same origin: refused.
    let same_origin = b
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            fetch("/rpc", {method: "POST", headers: {"Content-Type": "application/json"},
                           body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "configure",
                                                 params: {name: "evil1", pub_id: arguments[0]}})})
              .then(async (r) => done({status: r.status, body: await r.text()}))
              .catch((e) => done({failed: String(e)}));"#,
            json!([pub_.keypair.id()]),
        )
        .await;
    assert_eq!(same_origin["status"], 403, "{same_origin}");
    assert!(
        !same_origin["body"]
            .as_str()
            .unwrap_or_default()
            .contains("jsonrpc"),
        "{same_origin}"
    );
    // Across origins to 127.0.0.1: no CORS is granted, the call never
    // gives the page an answer.
    let cross = b
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            fetch(arguments[0], {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "status"})})
              .then(async (r) => done({status: r.status, body: await r.text()}))
              .catch((e) => done({failed: String(e)}));"#,
            json!([format!("http://127.0.0.1:{port}/rpc")]),
        )
        .await;
    assert!(cross["failed"].is_string(), "{cross}");
    // Nothing changed.
    let config = d.result("get_config", None).await;
    assert_eq!(config["registration"]["name"], Value::Null, "{config}");
    shot(&b, pi.dir.path(), "panel-foreign-host.png").await;

    // The same browser, a loopback name: the panel.
    for host in ["127.0.0.1", "localhost"] {
        b.goto(&format!("http://{host}:{port}/")).await;
        let p = wait_panel(&b, &format!("the panel at {host}"), LOAD, |p| {
            p["state"] != "Loading…"
        })
        .await;
        assert_eq!(p["state"], UNCONFIGURED_WORDS, "{host}: {p:#}");
    }

    b.quit().await;
    d.stop().await;
}
