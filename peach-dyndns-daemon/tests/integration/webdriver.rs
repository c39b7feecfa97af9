//! A small W3C WebDriver client for the panel tests: Debian's
//! `chromedriver` on a free loopback port, one headless Chromium session,
//! and the few commands the tests use (navigate, find by CSS, text,
//! attribute, type, click, run a script, screenshot), spoken as JSON over
//! HTTP with reqwest.
//!
//! chromedriver runs in a process group of its own and Chromium starts
//! inside it, so dropping the [`Browser`] (also when a test panics) stops
//! them all: SIGTERM to the group, SIGKILL after a grace period, then any
//! process still naming this browser's own temporary directory on its
//! command line (Chromium's crash handler leaves the group) by its PID.
//! A missing `chromium` or `chromedriver` fails the test; it never skips.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Debian's Chromium (a shell wrapper around `/usr/lib/chromium/chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, the same version as Chromium (one source package).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver gets to answer `/status` after it starts: it
/// is ready in well under a second on an idle machine, this one is shared.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// How long one WebDriver command may take. A new session starts Chromium,
/// a few seconds on two busy cores; the rest take milliseconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver and Chromium get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often waits look again: the panel reacts within tens of ms.
const POLL: Duration = Duration::from_millis(100);
/// The window size: the whole panel fits, so one screenshot shows it.
const WINDOW_SIZE: &str = "--window-size=900,1400";

/// A running chromedriver with one Chromium session.
pub struct Browser {
    /// For WebDriver commands.
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`: the prefix of every command.
    session: String,
    /// chromedriver (and Chromium in its process group); dropped before
    /// `dir`, so nothing writes into a directory being removed.
    driver: DriverProcess,
    /// HOME of chromedriver and Chromium, the profile and the logs.
    dir: TempDir,
}

/// A reference to an element of the current page.
pub struct Element<'a> {
    /// The browser it lives in.
    browser: &'a Browser,
    /// WebDriver's id for it.
    id: String,
    /// The CSS selector that found it, for messages.
    css: String,
}

/// chromedriver's process, stopped by process group on drop.
struct DriverProcess {
    /// The child; its PID is also its process group id.
    child: Child,
    /// Text that only this browser's processes have on their command
    /// lines (the temp dir's path): how strays outside the group are found.
    marker: String,
    /// Set once the child was waited for; never signal a reaped PID.
    reaped: bool,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with the flags this
    /// machine needs plus `extra_args`.
    ///
    /// # Panics
    ///
    /// When Chromium or chromedriver is missing or does not start: these
    /// tests need the real browser.
    pub async fn start(extra_args: &[&str]) -> Browser {
        for (program, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(program).is_file(),
                "the panel tests need {program} (Debian package {package}) and it is missing: \
                 run scripts/install-test-deps, or apt-get install chromium chromium-driver"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("peach-dyndns-chromium-")
            .tempdir()
            .expect("temp dir for Chromium");
        let home = dir.path().join("home");
        let profile = dir.path().join("profile");
        for d in [&home, &profile] {
            std::fs::create_dir_all(d).expect("create Chromium dirs");
        }
        let log = dir.path().join("chromedriver.log");
        let port = testkit::free_port();
        let out = File::create(&log).expect("chromedriver log");
        let err = out.try_clone().expect("chromedriver log");
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            // Only this machine may talk to it (also the default; said
            // anyway, it is a remote-control port for a browser).
            .arg("--allowed-ips=127.0.0.1")
            // HOME: Chromium's crash database lands here, not in /root.
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("starting {CHROMEDRIVER} failed: {e} (run scripts/install-test-deps)")
        });
        let mut driver = DriverProcess {
            child,
            marker: format!("{}/", dir.path().display()),
            reaped: false,
        };
        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .no_proxy()
            .build()
            .expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");

        // Ready when /status says so; fail early if it exited.
        let deadline = Instant::now() + DRIVER_READY;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                driver.reaped = true;
                panic!(
                    "{CHROMEDRIVER} exited at start ({status}); its log:\n{}",
                    read_log(&log)
                );
            }
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(res) => res
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not become ready on port {port} within {DRIVER_READY:?}; \
                 its log:\n{}",
                read_log(&log)
            );
            tokio::time::sleep(POLL).await;
        }

        let mut args: Vec<String> = [
            "--headless",
            // Root in a container: Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            // No network but loopback here: stop Chromium's own calls home,
            // which the closed network refuses many at a time.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Type the URL we ask for, never an https:// upgrade of it.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
            WINDOW_SIZE,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_args.iter().map(ToString::to_string));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer = match http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
        {
            Ok(res) => res
                .json::<Value>()
                .await
                .unwrap_or_else(|e| json!({"bad json": e.to_string()})),
            Err(e) => json!({"request failed": e.to_string()}),
        };
        let Some(id) = answer["value"]["sessionId"].as_str() else {
            panic!(
                "chromedriver could not start Chromium ({CHROMIUM}): {answer}\n\
                 chromedriver's log:\n{}",
                read_log(&log)
            );
        };
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            dir,
        }
    }

    /// The browser's own temporary directory (profile, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One WebDriver command; the `value` of its answer, or WebDriver's
    /// error as `Err("<error>: <message>")`.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = res.status();
        let answer: Value = res
            .json()
            .await
            .map_err(|e| format!("{method} {url}: HTTP {status}, not JSON: {e}"))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "{}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            ))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.command(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        let v = self
            .get("/url")
            .await
            .unwrap_or_else(|e| panic!("url: {e}"));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, if there is one.
    ///
    /// # Panics
    ///
    /// When WebDriver fails otherwise (the session is gone, a bad selector).
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let v = match self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await
        {
            Ok(v) => v,
            Err(e) if e.starts_with("no such element:") => return None,
            Err(e) => panic!("finding {css:?}: {e}"),
        };
        let id = v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("finding {css:?}: no element reference in {v}"));
        Some(Element {
            browser: self,
            id: id.to_string(),
            css: css.to_string(),
        })
    }

    /// The first element matching `css`.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!(
                "no element matches {css:?} on {}; the page says:\n{}",
                self.url().await,
                self.body_text().await
            ),
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` in the page; it finishes by calling the callback
    /// WebDriver passes as its last argument, with the result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
            .unwrap_or_else(|e| panic!("async script failed: {e}\n{script}"))
    }

    /// The text a person sees on the page (for messages).
    pub async fn body_text(&self) -> String {
        match self
            .post(
                "/execute/sync",
                json!({"script": "return document.body ? document.body.innerText : '';", "args": []}),
            )
            .await
        {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) => format!("(could not read the page: {e})"),
        }
    }

    /// Saves a PNG of the window to `path` and returns its size in bytes.
    pub async fn screenshot(&self, path: &Path) -> usize {
        let v = self
            .get("/screenshot")
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        png.len()
    }

    /// Runs `script` every [`POLL`] until `pred` holds for its result and
    /// returns that result; panics with the last result and the page's
    /// text after `timeout`.
    pub async fn wait_script(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execute(script, json!([])).await;
            if pred(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {v:#}\n\
                     the page says:\n{}",
                    self.body_text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sets the window's outer size in CSS pixels (headless: the viewport).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .unwrap_or_else(|e| panic!("setting the window to {width}×{height}: {e}"));
    }

    /// Emulates the system's colour scheme (`"dark"`, `"light"`, or `""`
    /// for none) through chromedriver's DevTools passthrough.
    pub async fn color_scheme(&self, scheme: &str) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia",
                   "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}}),
        )
        .await
        .unwrap_or_else(|e| panic!("emulating prefers-color-scheme: {scheme}: {e}"));
    }

    /// Ends the session (Chromium closes), then stops chromedriver.
    pub async fn quit(self) {
        // Best effort: the drop below stops whatever is left either way.
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// Its rendered text ("" when hidden).
    pub async fn text(&self) -> String {
        let v = self
            .browser
            .get(&self.path("/text"))
            .await
            .unwrap_or_else(|e| panic!("text of {:?}: {e}", self.css));
        v.as_str().unwrap_or_default().to_string()
    }

    /// An attribute (or the property of that name, as WebDriver does it).
    pub async fn attr(&self, name: &str) -> Option<String> {
        let v = self
            .browser
            .get(&self.path(&format!("/attribute/{name}")))
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of {:?}: {e}", self.css));
        v.as_str().map(str::to_string)
    }

    /// Empties an input.
    pub async fn clear(&self) {
        self.browser
            .post(&self.path("/clear"), json!({}))
            .await
            .unwrap_or_else(|e| panic!("clearing {:?}: {e}", self.css));
    }

    /// Types `text` into it, key by key (each key fires `input`).
    pub async fn send_keys(&self, text: &str) {
        self.browser
            .post(&self.path("/value"), json!({"text": text}))
            .await
            .unwrap_or_else(|e| panic!("typing into {:?}: {e}", self.css));
    }

    /// Clicks it.
    pub async fn click(&self) {
        self.browser
            .post(&self.path("/click"), json!({}))
            .await
            .unwrap_or_else(|e| panic!("clicking {:?}: {e}", self.css));
    }
}

impl DriverProcess {
    fn pid(&self) -> Pid {
        // PIDs fit in i32 on Linux (pid_max is at most 2^22).
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Whether the child has exited (reaping it).
    fn exited(&mut self) -> bool {
        if !self.reaped && matches!(self.child.try_wait(), Ok(Some(_))) {
            self.reaped = true;
        }
        self.reaped
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let group = self.pid();
        // The group outlives its leader when Chromium is still up, so it is
        // signalled even if chromedriver itself has exited (ESRCH: gone).
        let _ = signal::killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        // Until chromedriver is reaped and nothing is left in its group.
        while Instant::now() < deadline {
            let gone = self.exited() && !group_alive(group);
            if gone {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = signal::killpg(group, Signal::SIGKILL);
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
        // Chromium's crash handler starts its own session; it exits when
        // the browser has gone, but stop any process of ours that is left.
        for pid in processes_naming(&self.marker) {
            let _ = signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Whether any process is left in process group `group`.
fn group_alive(group: Pid) -> bool {
    // Signal 0 checks without sending anything.
    signal::killpg(group, None).is_ok()
}

/// PIDs of processes whose command line contains `marker`.
fn processes_naming(marker: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| u32::try_from(pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            std::fs::read(PathBuf::from(format!("/proc/{pid}/cmdline")))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .map(Pid::from_raw)
        .collect()
}

/// A log file's text, or why it could not be read.
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
