//! The web panel in real headless Chromium (driven through chromedriver's
//! W3C WebDriver API), against the daemon's real listener on 127.0.0.1:0,
//! the real peach-dyndns-server in-process (embedded DNS, allowlist) and
//! real ssb-servers (the pub's and the Pi's, through testkit):
//!
//! - the owner's whole story: an invite from the pub's ssb-server accepted
//!   in the panel, the pub listed (full id, URL, reachable, nothing
//!   chosen), a taken and a reserved name refused in words, a free one
//!   saved, the dot green; the pub stopped and the dot red with the reason;
//!   the pub back and the dot green without a reload; the release asked to
//!   confirm, and the name no longer resolving. Once at 900 px, once at a
//!   phone's 390 px.
//! - two pubs announcing one domain: both shown, both marked, none chosen.
//! - a pub that refuses the key, explained in words.
//! - the DNS-rebinding guard as a browser meets it.
//!
//! axe-core (npm, pinned in `testkit/axe/package-lock.json`) is injected
//! into both views; the tests print its counts and fail on a serious or
//! critical violation.
//!
//! Screenshots of every state go to `<target>/tmp/panel-screenshots/`
//! (Cargo's `CARGO_TARGET_TMPDIR`); `PEACH_DYNDNS_PANEL_SHOTS` names a
//! directory to copy them all to, and `PEACH_DYNDNS_README_SHOTS` one to
//! copy the README's three to (`scripts/screenshots` sets it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use peach_dyndns_daemon::daemon::{once, real_services};
use peach_dyndns_protocol::identity::{parse_secret_file, Keypair};
use serde_json::{json, Value};
use testkit::{DaemonConfig, Sbot};

use crate::common::*;
use crate::webdriver::Browser;

/// Page load, first `status` and `list_pubs` answers.
const LOAD: Duration = Duration::from_secs(15);
/// A name check: 300 ms of typing pause, then the daemon asks the pub.
const CHECK: Duration = Duration::from_secs(10);
/// An accepted invite until the pub's announcement is listed: the Pi's
/// ssb-server connects to the pub's and replicates its feed.
const TO_LISTED: Duration = Duration::from_secs(60);
/// Save to green dot: `configure`, `update_now`, the DNS check, and the
/// panel's next 3 s status poll.
const TO_GREEN: Duration = Duration::from_secs(25);
/// A stopped pub: the next check (every second in these configs) fails at
/// once (connection refused), and the panel polls every 3 s.
const TO_ERROR: Duration = Duration::from_secs(15);

/// The panel's words for each state (`WORDS` in `src/panel/panel.js`).
const ONLINE_WORDS: &str = "Online: the name points at this Pi";
const ERROR_WORDS: &str = "Not online";
const UNCONFIGURED_WORDS: &str = "Not set up yet";
/// `--ok` in `panel.css`: the green dot, as the browser computes it.
const GREEN: &str = "rgb(26, 127, 55)";
/// `--bad` in `panel.css`.
const RED: &str = "rgb(198, 40, 40)";
/// `--off`: grey.
const GREY: &str = "rgb(138, 138, 138)";

/// Everything a person sees of the panel, read in one script.
const SNAPSHOT: &str = r#"
const $ = (id) => document.getElementById(id);
const dot = $("dot");
if (!dot) return null;
const box = dot.getBoundingClientRect();
const msg = (id) => ({ text: $(id).textContent, class: $(id).className });
const time = (id) => {
  const t = $(id).querySelector("time");
  return t ? { text: t.textContent, title: t.title, datetime: t.dateTime } : $(id).textContent;
};
const link = $("fqdn").querySelector("a");
const dialog = $("release-dialog");
return {
  view: $("setup-view").hidden ? "status" : "setup",
  dot: dot.className,
  dot_color: getComputedStyle(dot).backgroundColor,
  dot_size: [box.width, box.height],
  state: $("state").textContent,
  reason: $("reason").textContent,
  fqdn: $("fqdn").textContent,
  fqdn_href: link ? link.getAttribute("href") : null,
  ipv4: $("ipv4").textContent,
  ipv6: $("ipv6").textContent,
  dns: $("dns").textContent,
  dns_checked: time("dns-checked"),
  last_success: time("last-success"),
  next_check: time("next-check"),
  tls_shown: !$("tls").hidden,
  error: $("error-details").hidden ? null : $("error").textContent,
  release_shown: !$("release").hidden,
  dialog_open: dialog.open,
  events: Array.from($("events").children).map((li) => ({ class: li.className, text: li.textContent })),
  pubs: Array.from(document.querySelectorAll(".pub")).map((c) => ({
    id: c.dataset.pubId,
    domain: c.querySelector("label").textContent,
    shown_id: c.querySelector(".pub-id").textContent,
    url: c.querySelector(".pub-url").textContent,
    reachable: c.querySelector(".reachable").textContent,
    checked: c.querySelector("input[type=radio]").checked,
    warning: c.querySelector(".warning") ? c.querySelector(".warning").textContent : null,
  })),
  suffix: $("suffix").textContent,
  name_msg: msg("name-msg"),
  pub_msg: msg("pub-msg"),
  invite_msg: msg("invite-msg"),
  save_msg: msg("save-msg"),
  action_msg: msg("action-msg"),
  width: window.innerWidth,
  scroll_width: document.documentElement.scrollWidth,
  marker: window.__no_reload === true,
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

/// The screenshots the README shows, by the names the tests give them.
const README_SHOTS: [&str; 3] = [
    "desktop-3-online.png",
    "desktop-2-setup-names.png",
    "phone-3-online.png",
];

/// Where screenshots are kept as test artifacts.
fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("panel-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Saves a screenshot as an artifact (and copies it where the variables
/// above ask).
async fn shot(b: &Browser, name: &str) {
    let path = shots_dir().join(name);
    let bytes = b.screenshot(&path).await;
    // A blank window compresses to a few KB; the panel's text makes it
    // many times larger.
    assert!(bytes > 10_000, "{name}: only {bytes} bytes, a blank page?");
    let mut copies = Vec::new();
    if let Some(dir) = std::env::var_os("PEACH_DYNDNS_PANEL_SHOTS") {
        copies.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("PEACH_DYNDNS_README_SHOTS") {
        if README_SHOTS.contains(&name) {
            copies.push(PathBuf::from(dir));
        }
    }
    for dir in copies {
        let keep = dir.join(name);
        std::fs::copy(&path, &keep)
            .unwrap_or_else(|e| panic!("copying the screenshot to {}: {e}", keep.display()));
    }
    eprintln!("screenshot: {}", path.display());
}

/// axe-core's script, from the npm tree `scripts/install-test-deps`
/// installs. The crate's directory is the one `cargo test` names when it
/// runs the test (a build cache shared by clones at other paths may hold a
/// binary compiled in another clone).
fn axe_source() -> String {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    let path = crate_dir.join("../testkit/axe/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the accessibility check needs axe-core at {} ({e}): run scripts/install-test-deps \
             (npm ci in testkit/axe)",
            path.display()
        )
    })
}

/// Runs axe-core on the page as it is; prints the counts per impact and
/// fails on any serious or critical violation. Returns the violations.
async fn axe(b: &Browser, what: &str) -> Value {
    let loaded = b
        .execute(
            &format!("{}\n;return typeof window.axe;", axe_source()),
            json!([]),
        )
        .await;
    assert_eq!(loaded, "object", "axe-core did not load into the page");
    let result = b
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            window.axe.run(document, { resultTypes: ["violations"] })
              .then((r) => done({
                version: window.axe.version,
                passes: r.passes.length,
                violations: r.violations.map((v) => ({
                  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
                  targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
                })),
              }))
              .catch((e) => done({ failed: String(e) }));"#,
            json!([]),
        )
        .await;
    assert!(result["failed"].is_null(), "axe-core failed: {result}");
    let violations = result["violations"].as_array().cloned().unwrap_or_default();
    let count = |impact: &str| violations.iter().filter(|v| v["impact"] == impact).count();
    eprintln!(
        "axe-core {} on {what}: {} critical, {} serious, {} moderate, {} minor violations \
         ({} rules passed){}",
        result["version"].as_str().unwrap_or("?"),
        count("critical"),
        count("serious"),
        count("moderate"),
        count("minor"),
        result["passes"],
        if violations.is_empty() {
            String::new()
        } else {
            format!(": {violations:#?}")
        }
    );
    assert_eq!(
        count("critical") + count("serious"),
        0,
        "axe-core finds serious or critical violations on {what}: {violations:#?}"
    );
    Value::Array(violations)
}

/// Types `label` into the subdomain field and waits for what the panel
/// says about it.
async fn check_name_live(b: &Browser, label: &str, pred: impl Fn(&str) -> bool) -> Value {
    let field = b.find("#name").await;
    field.clear().await;
    field.send_keys(label).await;
    let p = wait_panel(b, &format!("the availability of {label:?}"), CHECK, |p| {
        let text = p["name_msg"]["text"].as_str().unwrap_or_default();
        text != "Checking…" && !text.is_empty() && pred(text)
    })
    .await;
    p["name_msg"].clone()
}

/// Whether the page has no horizontal scrolling (readable on a phone).
fn fits(p: &Value) -> bool {
    p["scroll_width"].as_f64().unwrap_or(f64::MAX) <= p["width"].as_f64().unwrap_or(0.0)
}

/// A pub: its ssb-server (announcing dyndns, handing out invites) and its
/// peach-dyndns-server sealed to the same key.
struct SbotPub {
    sbot: Sbot,
    server: TestPub,
}

impl SbotPub {
    async fn start(allowed: &[&Keypair]) -> SbotPub {
        let sbot = Sbot::builder().allow_private(true).start();
        let key = parse_secret_file(&std::fs::read_to_string(sbot.secret_path()).expect("secret"))
            .expect("pub secret");
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
        testkit::write_secret(&dir.path().join("secret"), &key.to_secret_file());
        let server = TestPub::start_as(dir, key, allowed).await;
        SbotPub { sbot, server }
    }

    fn announce(&self, url: &str) {
        self.sbot.publish(json!({
            "type": "peach-dyndns", "domain": DOMAIN, "url": url, "ttl": 60
        }));
    }

    fn invite(&self) -> String {
        let invite = self.sbot.cli(&["invite.create", "1"], None);
        invite.trim().trim_matches('"').to_string()
    }
}

/// A Pi's config with its own ssb-server and nothing chosen: no pub, no
/// name (the daemon is unconfigured).
fn sbot_pi_config(pi: &Pi, pi_sbot: &Sbot, dns: std::net::SocketAddr) -> String {
    DaemonConfig::new()
        .secret_path(pi_sbot.secret_path())
        .state_path(pi.dir.path().join("state.json"))
        .fast_timers()
        .allow_private_addresses(true)
        .dns_server(dns)
        .dns_timeout_secs(1)
        .rpc_listen("127.0.0.1:0")
        .sbot_address(format!("127.0.0.1:{}", pi_sbot.port()))
        .allow_private_pub_urls(true)
        .to_toml()
}

/// The owner's whole story, at one window width; `tag` prefixes the
/// screenshots.
async fn story(tag: &str, width: u32, height: u32) {
    let started = std::time::Instant::now();
    let pi_sbot = Sbot::start();
    let pi_key =
        parse_secret_file(&std::fs::read_to_string(pi_sbot.secret_path()).expect("pi secret"))
            .expect("pi secret");
    let other = Pi::new();
    let mut pub_ = SbotPub::start(&[&pi_key, &other.keypair]).await;
    pub_.announce(&pub_.server.update_url());
    // Another Pi holds "taken1" at the pub.
    let config = other.write_config(
        &other
            .config_text(&pub_.server, "", "")
            .replace("eb4890", "taken1"),
    );
    let outcome = once(&config, real_services(&config).expect("services")).await;
    assert_eq!(outcome.exit_code, 0, "{:#?}", outcome.status);

    let pi = Pi::new();
    let config = pi.write_config(&sbot_pi_config(&pi, &pi_sbot, pub_.server.dns));
    let mut d = RunningDaemon::start(&pi, config).await;
    let b = Browser::start(&[]).await;
    b.set_window_size(width, height).await;
    b.goto(&format!("http://127.0.0.1:{}/", d.rpc.port())).await;
    b.execute("window.__no_reload = true;", json!([])).await;

    // Unconfigured: the panel opens on Setup; no pub is known yet.
    let p = wait_panel(&b, "the first status and the empty pub list", LOAD, |p| {
        p["state"] != "Loading…"
            && p["view"] == "setup"
            && p["pub_msg"]["text"] != "Looking for pubs…"
    })
    .await;
    assert_eq!(p["width"], width, "the viewport is {width} px wide: {p:#}");
    assert_eq!(p["dot"], "dot unconfigured", "{p:#}");
    assert_eq!(p["dot_color"], GREY, "{p:#}");
    assert_eq!(p["state"], UNCONFIGURED_WORDS, "{p:#}");
    assert_eq!(p["pubs"], json!([]), "{p:#}");
    assert!(
        p["pub_msg"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Accept an invite first"),
        "{p:#}"
    );
    assert!(fits(&p), "no horizontal scrolling at {width} px: {p:#}");
    assert_eq!(d.result("is_online", None).await, json!(false));
    shot(&b, &format!("{tag}-1-setup-empty.png")).await;

    // The invite from the pub's real ssb-server, pasted and accepted.
    b.find("#invite").await.send_keys(&pub_.invite()).await;
    b.find("#invite-form button[type=submit]")
        .await
        .click()
        .await;
    let p = wait_panel(&b, "the pub listed after the invite", TO_LISTED, |p| {
        p["pubs"].as_array().is_some_and(|a| !a.is_empty())
            && p["pubs"][0]["reachable"] != "checking…"
    })
    .await;
    let pubs = p["pubs"].as_array().expect("pubs");
    assert_eq!(pubs.len(), 1, "{p:#}");
    let card = &pubs[0];
    let pub_id = pub_.server.keypair.id();
    assert_eq!(card["id"], pub_id, "{p:#}");
    assert_eq!(card["shown_id"], pub_id, "the full id is shown: {p:#}");
    assert_eq!(card["domain"], DOMAIN, "{p:#}");
    assert_eq!(card["url"], pub_.server.update_url(), "{p:#}");
    assert_eq!(card["reachable"], "yes", "{p:#}");
    assert_eq!(card["warning"], Value::Null, "{p:#}");
    assert_eq!(
        card["checked"], false,
        "nothing is chosen for the owner: {p:#}"
    );
    assert_eq!(p["suffix"], "", "{p:#}");
    assert!(p["invite_msg"]["class"] == "msg ok", "{p:#}");
    // The Pi now follows the pub in its own ssb-server.
    assert!(pi_sbot.is_following(pi_sbot.id(), pub_.sbot.id()));

    // A name before a pub is chosen: the panel asks for the pub.
    let m = check_name_live(&b, "taken1", |t| t.contains("Pick a pub")).await;
    assert_eq!(m["text"], "Pick a pub above to check taken1.", "{m}");
    b.find("#pub-0").await.click().await;
    // Taken, in words a person reads (not the wire code name_taken).
    let m = check_name_live(&b, "taken1", |t| t.contains("taken1.")).await;
    assert_eq!(
        m["text"],
        format!("taken1.{DOMAIN} is not available: another Pi has registered it"),
        "{m}"
    );
    assert_eq!(m["class"], "msg bad", "{m}");
    // Reserved.
    let m = check_name_live(&b, "www", |t| t.contains("www")).await;
    assert_eq!(m["class"], "msg bad", "{m}");
    let text = m["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!("www.{DOMAIN} is not available"))
            || text.starts_with("www is not available"),
        "{m}"
    );
    assert!(text.contains("reserved"), "{m}");
    // The name rule, as the owner types, before any request.
    let m = check_name_live(&b, "My-Pi", |t| t.contains("My-Pi")).await;
    assert_eq!(
        m["text"], "My-Pi is not a valid subdomain: use lowercase letters only.",
        "{m}"
    );
    let m = check_name_live(&b, "pi-", |t| t.contains("pi-")).await;
    assert_eq!(
        m["text"], "pi- is not a valid subdomain: it may not start or end with a hyphen.",
        "{m}"
    );
    // Free.
    let m = check_name_live(&b, "eb4890", |t| t.contains("eb4890")).await;
    assert_eq!(m["text"], format!("eb4890.{DOMAIN} is available."), "{m}");
    assert_eq!(m["class"], "msg ok", "{m}");
    let p = wait_panel(&b, "the chosen pub", LOAD, |p| {
        p["pubs"][0]["checked"] == true
    })
    .await;
    assert_eq!(p["suffix"], format!(".{DOMAIN}"), "{p:#}");
    assert!(fits(&p), "no horizontal scrolling at {width} px: {p:#}");
    shot(&b, &format!("{tag}-2-setup-names.png")).await;
    axe(&b, &format!("the setup view ({width} px)")).await;

    // Save: the status view, and the dot turns green.
    b.find("#save").await.click().await;
    let p = wait_panel(&b, "the green dot", TO_GREEN, |p| {
        p["dot"] == "dot online" && p["events"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(p["view"], "status", "{p:#}");
    assert_eq!(p["state"], ONLINE_WORDS, "{p:#}");
    assert_eq!(p["dot_color"], GREEN, "{p:#}");
    assert!(
        p["dot_size"][0].as_f64().unwrap_or(0.0) >= 32.0,
        "the dot is large: {p:#}"
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("DNS answers"),
        "{p:#}"
    );
    assert_eq!(p["fqdn"], format!("eb4890.{DOMAIN}"), "{p:#}");
    assert_eq!(p["fqdn_href"], format!("https://eb4890.{DOMAIN}/"), "{p:#}");
    assert_eq!(p["ipv4"], "127.0.0.1", "{p:#}");
    assert_eq!(p["ipv6"], "—", "{p:#}");
    assert_eq!(p["dns"], "answers with this address", "{p:#}");
    // Relative times, the exact time on hover.
    let last = &p["last_success"];
    let text = last["text"].as_str().unwrap_or_default();
    assert!(
        text == "just now" || text.ends_with("seconds ago"),
        "relative: {p:#}"
    );
    assert!(
        last["title"].as_str().is_some_and(|t| t.contains(':')),
        "the exact time on hover: {p:#}"
    );
    assert!(
        last["datetime"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{p:#}"
    );
    assert!(p["dns_checked"]["title"].is_string(), "{p:#}");
    assert!(p["next_check"]["text"].is_string(), "{p:#}");
    assert_eq!(p["tls_shown"], false, "no tls part in this status: {p:#}");
    assert_eq!(p["error"], Value::Null, "{p:#}");
    assert_eq!(p["release_shown"], true, "{p:#}");
    let events = p["events"].to_string();
    assert!(
        events.contains("kind-accepted")
            && events.contains(&format!("eb4890.{DOMAIN} → 127.0.0.1")),
        "{p:#}"
    );
    assert_eq!(d.result("is_online", None).await, json!(true));
    assert_eq!(
        testkit::dig(pub_.server.dns, &format!("eb4890.{DOMAIN}"), "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );
    let written = std::fs::read_to_string(pi.config_path()).expect("config");
    assert!(written.contains("name = \"eb4890\""), "{written}");
    assert!(written.contains(&pub_id), "{written}");
    assert!(fits(&p), "no horizontal scrolling at {width} px: {p:#}");
    shot(&b, &format!("{tag}-3-online.png")).await;
    axe(&b, &format!("the status view ({width} px)")).await;
    // The same in the dark scheme (its own colours).
    b.color_scheme("dark").await;
    let bg = b
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            json!([]),
        )
        .await;
    assert_eq!(bg, "rgb(22, 22, 22)", "the dark scheme applies");
    axe(&b, &format!("the status view, dark ({width} px)")).await;
    b.color_scheme("light").await;

    // The HTTPS part, as the status's `tls` (the ACME part) gives it, and
    // its absence, through the page's own renderer.
    let tls = b
        .execute(
            r#"const fqdn = arguments[0];
            const el = document.getElementById("tls");
            const now = Math.floor(Date.now() / 1000);
            const seen = () => ({ shown: !el.hidden, text: el.textContent });
            showTls({ state: "valid", names: [fqdn], not_after: now + 60 * 86400,
                      next_attempt_at: now + 30 * 86400, last_error: null });
            const valid = seen();
            showTls({ state: "error", names: [fqdn], not_after: null,
                      next_attempt_at: now + 600, last_error: "the ACME server said no" });
            const error = seen();
            showTls(undefined);
            const absent = seen();
            return { valid, error, absent };"#,
            json!([format!("eb4890.{DOMAIN}")]),
        )
        .await;
    let valid = tls["valid"]["text"].as_str().unwrap_or_default();
    assert_eq!(tls["valid"]["shown"], true, "{tls:#}");
    assert!(
        valid.starts_with(&format!(
            "certificate valid for eb4890.{DOMAIN}; valid until "
        )) && valid.contains("(in 2 months)"),
        "{tls:#}"
    );
    let error = tls["error"]["text"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("certificate problem")
            && error.contains("next try in 10 minutes")
            && error.ends_with("last error: the ACME server said no"),
        "{tls:#}"
    );
    assert_eq!(tls["absent"]["shown"], false, "{tls:#}");

    // The pub goes away: red, with the reason in words, by itself.
    pub_.server.stop().await;
    let p = wait_panel(&b, "the error state", TO_ERROR, |p| p["dot"] == "dot error").await;
    assert_eq!(p["state"], ERROR_WORDS, "{p:#}");
    assert_eq!(p["dot_color"], RED, "{p:#}");
    let reason = p["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the pub may be down") && reason.contains("keeps trying"),
        "{p:#}"
    );
    let error = p["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("http://{}/", pub_.server.http))
            && error.contains("cannot connect"),
        "the details name the pub: {p:#}"
    );
    assert!(
        !reason.contains("undefined") && !error.contains("[object"),
        "{p:#}"
    );
    assert!(
        p["events"].to_string().contains("kind-failed"),
        "the failure is in the events: {p:#}"
    );
    assert_eq!(d.result("is_online", None).await, json!(false));
    shot(&b, &format!("{tag}-4-error.png")).await;

    // It comes back: green again, by itself, without a reload.
    pub_.server.restart().await;
    let p = wait_panel(&b, "green again", TO_GREEN, |p| p["dot"] == "dot online").await;
    assert_eq!(p["error"], Value::Null, "{p:#}");
    assert_eq!(p["marker"], true, "the page was not reloaded: {p:#}");
    assert_eq!(d.result("is_online", None).await, json!(true));
    let events = d.result("events", None).await;
    let kinds: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"failed") && kinds.contains(&"accepted") && kinds.contains(&"dns_verified"),
        "{events:#}"
    );

    // Release: asked first, from the keyboard (Enter on the button);
    // Escape, like "Keep it", changes nothing.
    b.find("#release").await.send_keys("\u{E007}").await;
    let p = wait_panel(&b, "the confirmation", LOAD, |p| p["dialog_open"] == true).await;
    let focused = b
        .execute("return document.activeElement.id;", json!([]))
        .await;
    assert_eq!(focused, "release-cancel", "the dialog takes the focus");
    let question = b.find("#release-text").await.text().await;
    assert!(
        question.contains(&format!("eb4890.{DOMAIN}"))
            && question.contains("another Pi may take it"),
        "{question}"
    );
    assert_eq!(p["dot"], "dot online", "{p:#}");
    shot(&b, &format!("{tag}-5-release-confirm.png")).await;
    axe(&b, &format!("the release dialog ({width} px)")).await;
    b.find("#release-cancel").await.send_keys("\u{E00C}").await;
    let p = wait_panel(&b, "the dialog closed", LOAD, |p| p["dialog_open"] == false).await;
    assert_eq!(p["dot"], "dot online", "{p:#}");
    assert_eq!(
        testkit::dig(pub_.server.dns, &format!("eb4890.{DOMAIN}"), "A")
            .time_secs(1)
            .short(),
        ["127.0.0.1"]
    );
    // Confirmed: released, and the name stops resolving.
    b.find("#release").await.click().await;
    wait_panel(&b, "the confirmation", LOAD, |p| p["dialog_open"] == true).await;
    b.find("#release-confirm").await.click().await;
    let p = wait_panel(&b, "released", TO_GREEN, |p| {
        p["action_msg"]["text"] == "Released."
            && p["dot"] == "dot unconfigured"
            && p["events"].to_string().contains("kind-released")
    })
    .await;
    assert_eq!(p["release_shown"], false, "{p:#}");
    assert_eq!(p["fqdn"], "—", "{p:#}");
    assert!(p["events"].to_string().contains("kind-released"), "{p:#}");
    assert!(
        testkit::dig(pub_.server.dns, &format!("eb4890.{DOMAIN}"), "A")
            .time_secs(1)
            .short()
            .is_empty(),
        "the released name still resolves"
    );
    let written = std::fs::read_to_string(pi.config_path()).expect("config");
    assert!(!written.contains("name = \"eb4890\""), "{written}");
    // Another Pi may take it now.
    let taken = d
        .result(
            "check_name",
            Some(json!({"name": "eb4890", "pub_id": pub_id})),
        )
        .await;
    assert_eq!(taken["available"], true, "{taken}");
    assert_eq!(p["marker"], true, "the page was not reloaded: {p:#}");
    shot(&b, &format!("{tag}-6-released.png")).await;

    b.quit().await;
    d.stop().await;
    eprintln!("the story at {width} px took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_story_from_invite_to_green_and_release() {
    story("desktop", 900, 1400).await;
}

/// The same story at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_story_at_a_phones_width() {
    story("phone", 390, 844).await;
}

/// Two pubs announce the same domain: both are listed with their full ids
/// and URLs, both are marked, and neither is chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_marks_two_pubs_claiming_one_domain() {
    let pi_sbot = Sbot::start();
    let pi_key =
        parse_secret_file(&std::fs::read_to_string(pi_sbot.secret_path()).expect("pi secret"))
            .expect("pi secret");
    let real = SbotPub::start(&[&pi_key]).await;
    real.announce(&real.server.update_url());
    // The second one claims the domain with a URL where nothing answers.
    let impostor = Sbot::builder().allow_private(true).start();
    let nowhere = format!("http://127.0.0.1:{}/update", testkit::free_port());
    impostor.publish(json!({
        "type": "peach-dyndns", "domain": DOMAIN, "url": nowhere, "ttl": 60
    }));
    let pi = Pi::new();
    let config = pi.write_config(&sbot_pi_config(&pi, &pi_sbot, real.server.dns));
    let mut d = RunningDaemon::start(&pi, config).await;
    for invite in [
        real.invite(),
        impostor
            .cli(&["invite.create", "1"], None)
            .trim()
            .trim_matches('"')
            .to_string(),
    ] {
        let r = d
            .call("accept_invite", Some(json!({"invite": invite})))
            .await;
        assert_eq!(r["result"], true, "{r}");
    }

    let b = Browser::start(&[]).await;
    b.goto(&format!("http://127.0.0.1:{}/#setup", d.rpc.port()))
        .await;
    // The panel lists what the daemon finds; look again until both came.
    let deadline = std::time::Instant::now() + TO_LISTED;
    loop {
        let p = wait_panel(&b, "the pub list", LOAD, |p| {
            p["pub_msg"]["text"] != "Looking for pubs…"
        })
        .await;
        if p["pubs"].as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both announcements never arrived: {p:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        b.find("#refresh-pubs").await.click().await;
    }
    let p = wait_panel(&b, "reachability of both", LOAD, |p| {
        p["pubs"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["reachable"] != "checking…"))
    })
    .await;
    let pubs = p["pubs"].as_array().expect("pubs");
    let find = |id: &str| {
        pubs.iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {p:#}"))
    };
    let real_card = find(&real.server.keypair.id());
    let fake_card = find(impostor.id());
    for (card, other) in [
        (real_card, impostor.id().to_string()),
        (fake_card, real.server.keypair.id()),
    ] {
        assert_eq!(card["domain"], DOMAIN, "{p:#}");
        assert_eq!(card["checked"], false, "nothing is chosen: {p:#}");
        assert_eq!(card["shown_id"], card["id"], "{p:#}");
        let warning = card["warning"].as_str().unwrap_or_default();
        assert!(
            warning.contains(&other) && warning.contains("also claims"),
            "marked, naming the other: {p:#}"
        );
    }
    assert_eq!(real_card["url"], real.server.update_url(), "{p:#}");
    assert_eq!(fake_card["url"], nowhere, "{p:#}");
    assert_eq!(real_card["reachable"], "yes", "{p:#}");
    assert!(
        fake_card["reachable"]
            .as_str()
            .is_some_and(|r| r.starts_with("no: ") && r.contains("cannot connect")),
        "{p:#}"
    );
    assert!(
        p["pub_msg"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("More than one pub claims the same domain"),
        "{p:#}"
    );
    assert_eq!(p["suffix"], "", "{p:#}");
    // Saving without a choice is refused in words.
    b.find("#name").await.send_keys("eb4890").await;
    b.find("#save").await.click().await;
    let p = wait_panel(&b, "the refusal to save", LOAD, |p| {
        p["save_msg"]["text"] == "Pick a pub first."
    })
    .await;
    assert_eq!(p["dot"], "dot unconfigured", "{p:#}");
    shot(&b, "conflict.png").await;
    axe(&b, "the setup view with two pubs claiming one domain").await;
    b.color_scheme("dark").await;
    axe(&b, "the setup view with two pubs claiming one domain, dark").await;
    shot(&b, "conflict-dark.png").await;

    b.quit().await;
    d.stop().await;
}

/// A pub that does not follow this Pi: the panel says so in words, and
/// that retrying waits for a setup change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_explains_a_pub_that_refuses_the_key() {
    let pi = Pi::new();
    let pub_ = TestPub::start(&[]).await;
    let config = pi.write_config(&unconfigured(&pi, &pub_));
    let mut d = RunningDaemon::start(&pi, config).await;
    let b = Browser::start(&[]).await;
    b.goto(&format!("http://localhost:{}/#setup", d.rpc.port()))
        .await;
    let p = wait_panel(&b, "the pub list", LOAD, |p| {
        p["pubs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    // The configured pub is the one chosen.
    assert_eq!(p["pubs"][0]["checked"], true, "{p:#}");
    let m = check_name_live(&b, "eb4890", |t| t.contains("eb4890")).await;
    assert_eq!(m["class"], "msg ok", "{m}");
    b.find("#save").await.click().await;

    let p = wait_panel(&b, "the refusal", TO_ERROR, |p| p["dot"] == "dot error").await;
    assert_eq!(p["state"], ERROR_WORDS, "{p:#}");
    let reason = p["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("does not follow this Pi") && reason.contains("invite"),
        "{p:#}"
    );
    let error = p["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not follow"), "{p:#}");
    assert!(!reason.contains("not_followed"), "no wire code: {p:#}");
    assert_eq!(p["next_check"], "after the setup changes", "{p:#}");
    assert!(p["events"].to_string().contains("kind-refused"), "{p:#}");
    assert_eq!(d.result("is_online", None).await, json!(false));
    assert!(testkit::dig(pub_.dns, &format!("eb4890.{DOMAIN}"), "A")
        .time_secs(1)
        .short()
        .is_empty());
    shot(&b, "refused.png").await;

    b.quit().await;
    d.stop().await;
}

/// A Pi config that names the pub (so `list_pubs` offers it without a
/// local sbot) but no subdomain: the daemon is unconfigured.
fn unconfigured(pi: &Pi, pub_: &TestPub) -> String {
    let full = pi.config_text(pub_, "", "");
    let text = full.replace("name = \"eb4890\"\n", "");
    assert_ne!(text, full, "the name line is gone");
    text
}

/// A page reached under a foreign name that resolves to loopback (DNS
/// rebinding) gets a 403 and no panel, and its script cannot use the
/// JSON-RPC, same-origin or cross-origin; loopback names work in the same
/// browser.
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
    shot(&b, "foreign-host.png").await;

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
