// peach-dyndns panel: talks JSON-RPC to the daemon on the same origin,
// through relative URLs only, so it also works under a sub-path.
"use strict";

const $ = (id) => document.getElementById(id);
let nextId = 1;
let pubs = [];
let config = null;
let lastStatus = null;
let lastEvents = [];

/// One JSON-RPC call; an error answer throws with the daemon's words.
async function rpc(method, params) {
  const body = { jsonrpc: "2.0", id: nextId++, method };
  if (params !== undefined) body.params = params;
  const res = await fetch("rpc", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let answer;
  try {
    answer = await res.json();
  } catch (_) {
    throw new Error("the daemon answered HTTP " + res.status);
  }
  if (answer.error) throw new Error(answer.error.message);
  return answer.result;
}

function say(id, text, kind) {
  const el = $(id);
  el.textContent = text || "";
  el.className = "msg" + (kind ? " " + kind : "");
}

// ---- times -------------------------------------------------------------

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/// "2 minutes ago", "in 30 seconds", "just now".
function relative(unixSeconds) {
  const diff = unixSeconds - Date.now() / 1000;
  const abs = Math.abs(diff);
  if (abs < 5) return "just now";
  const units = [["second", 60], ["minute", 3600], ["hour", 86400], ["day", 86400 * 30], ["month", 86400 * 365]];
  let size = 1;
  for (const [unit, next] of units) {
    if (abs < next) return RELATIVE.format(Math.round(diff / size), unit);
    size = next;
  }
  return RELATIVE.format(Math.round(diff / (86400 * 365)), "year");
}

/// A <time> element: relative text, the exact time on hover (title) and
/// for machines (datetime).
function timeElement(unixSeconds) {
  const t = document.createElement("time");
  const d = new Date(unixSeconds * 1000);
  t.dateTime = d.toISOString();
  t.title = d.toLocaleString();
  t.dataset.at = String(unixSeconds);
  t.textContent = relative(unixSeconds);
  return t;
}

function setTime(id, unixSeconds, fallback) {
  const el = $(id);
  if (unixSeconds) el.replaceChildren(timeElement(unixSeconds));
  else el.textContent = fallback || "—";
}

/// Keeps every relative time current between polls.
function tickTimes() {
  for (const t of document.querySelectorAll("time[data-at]")) {
    t.textContent = relative(Number(t.dataset.at));
  }
}

// ---- status --------------------------------------------------------------

const WORDS = {
  online: "Online: the name points at this Pi",
  working: "Working…",
  error: "Not online",
  unconfigured: "Not set up yet",
  disabled: "Turned off",
};

/// What a problem means, and what to do about it, by its code.
const REASONS = {
  not_followed: "The pub does not follow this Pi yet. Ask the pub's operator for an invite and accept it under Setup, or wait until the pub follows this Pi.",
  blocked: "The pub has blocked this Pi. Ask the pub's operator, or pick another pub under Setup.",
  name_taken: "Another Pi has registered this name at the pub. Pick another subdomain under Setup.",
  reserved_name: "The pub keeps this name for itself. Pick another subdomain under Setup.",
  invalid_name: "This is not a valid subdomain. Pick another one under Setup.",
  too_many_names: "This Pi holds as many names at the pub as the pub allows. Release one first.",
  rate_limited: "The pub asked this Pi to slow down. It will try again by itself later.",
  unreachable: "The pub cannot be reached. Check this Pi's internet connection; if it works, the pub may be down. The Pi keeps trying by itself.",
  bad_answer: "Something answered at the pub's address, but not as a dynamic DNS pub does. The pub's address may have changed; look for pubs again under Setup.",
  no_pub: "This Pi has not seen the pub's announcement yet. Accept the pub's invite under Setup, then give its feed a minute to arrive.",
  no_address: "This Pi could not find its own public address: none of its address sources answered, the pub among them. Check this Pi's internet connection; if it works, the pub may be down. The Pi keeps trying by itself.",
  sbot: "The Pi's own Scuttlebutt server does not answer. Check that it is running.",
  secret: "The Pi's Scuttlebutt key cannot be read (or others can read it). Check the key file's owner and mode.",
  dns_mismatch: "The pub accepted this Pi's address, but its DNS does not answer with it. The Pi checks again by itself; if this stays, tell the pub's operator.",
  dns_unavailable: "The pub's DNS is having trouble. It will try again by itself.",
  graph_unavailable: "The pub cannot check who it follows right now. It will try again by itself.",
  stale_seq: "The pub has seen a newer update from this key. The Pi moves past it by itself; if this stays, check the Pi's clock.",
  invalid_seq: "The pub and this Pi disagree about the time. Check the Pi's clock.",
  seq_not_believed: "The pub claims an update from this key far in the future. Check the Pi's clock, or pick another pub.",
  wrong_domain: "The pub serves another domain than it announced. Look for pubs again under Setup.",
  wrong_pub: "The pub's key is not the one this Pi was told. Look for pubs again under Setup.",
  internal: "The pub had an internal error. It will try again by itself.",
};

function reasonFor(s) {
  switch (s.state) {
    case "online":
      return "The pub accepted this Pi's address and its DNS answers with it.";
    case "working":
      return "Sending the address to the pub, or waiting for its DNS to show it.";
    case "unconfigured":
      return "Pick a pub and a subdomain under Setup.";
    case "disabled":
      return "Updates are turned off in the config (enabled = false).";
    default: {
      const code = s.last_error_code;
      if (code && REASONS[code]) return REASONS[code];
      return s.last_error ? "Something went wrong; see the details below." : "";
    }
  }
}

function dnsWords(s) {
  if (s.dns_verified) return "answers with this address";
  if (s.dns_checked_at) return "does not answer with this address";
  return "not checked yet";
}

/// The certificate part, when the daemon reports one (`tls`, with
/// `state`, `names`, `not_after`, `last_error`); absent on daemons
/// without ACME.
function showTls(tls) {
  const label = $("tls-label");
  const dd = $("tls");
  if (!tls || typeof tls !== "object") {
    label.hidden = true;
    dd.hidden = true;
    return;
  }
  label.hidden = false;
  dd.hidden = false;
  const parts = [];
  const names = Array.isArray(tls.names) ? tls.names.join(", ") : "";
  const state = String(tls.state || "");
  const hasCert = tls.not_after !== undefined && tls.not_after !== null;
  const words = {
    valid: "certificate valid",
    waiting: "waiting for the name to work before getting a certificate",
    ordering: hasCert ? "renewing the certificate" : "getting a certificate",
    renewing: "renewing the certificate",
    error: "certificate problem",
    disabled: "turned off",
  };
  parts.push(document.createTextNode((words[state] || state || "certificate") + (names ? " for " + names : "")));
  const notAfter = typeof tls.not_after === "number" ? tls.not_after
    : (typeof tls.not_after === "string" ? Math.floor(Date.parse(tls.not_after) / 1000) : NaN);
  if (Number.isFinite(notAfter)) {
    parts.push(document.createTextNode("; valid until "));
    const t = timeElement(notAfter);
    t.textContent = new Date(notAfter * 1000).toLocaleDateString();
    delete t.dataset.at;
    parts.push(t);
    parts.push(document.createTextNode(" (" + relative(notAfter) + ")"));
  }
  if (typeof tls.next_attempt_at === "number" && state !== "valid") {
    parts.push(document.createTextNode("; next try "));
    parts.push(timeElement(tls.next_attempt_at));
  }
  if (tls.last_error) {
    const err = document.createElement("span");
    err.className = "reachable-no";
    err.textContent = "; last error: " + tls.last_error;
    parts.push(err);
  }
  dd.replaceChildren(...parts);
}

function showStatus(s) {
  lastStatus = s;
  $("dot").className = "dot " + s.state;
  $("state").textContent = WORDS[s.state] || s.state;
  $("reason").textContent = reasonFor(s);
  const fqdn = s.fqdn || (s.registered && s.registered.fqdn);
  const name = $("fqdn");
  if (fqdn) {
    const a = document.createElement("a");
    a.href = "https://" + fqdn + "/";
    a.textContent = fqdn;
    a.rel = "noreferrer";
    name.replaceChildren(a);
  } else {
    name.textContent = s.name || "—";
  }
  $("ipv4").textContent = s.current_ip || s.ip || "—";
  $("ipv6").textContent = s.current_ip6 || s.ip6 || "—";
  setTime("last-success", s.last_success_at, "never");
  if (s.parked) $("next-check").textContent = "after the setup changes";
  else setTime("next-check", s.next_check_at, s.state === "unconfigured" ? "after setup" : "—");
  $("dns").textContent = dnsWords(s);
  const checked = $("dns-checked");
  if (s.dns_checked_at) {
    checked.replaceChildren(document.createTextNode("(checked "), timeElement(s.dns_checked_at), document.createTextNode(")"));
  } else {
    checked.replaceChildren();
  }
  showTls(s.tls);
  const details = $("error-details");
  if (s.last_error) {
    $("error").textContent = s.last_error;
    details.hidden = false;
  } else {
    details.hidden = true;
  }
  $("release").hidden = !s.registered;
}

const EVENT_WORDS = {
  accepted: "Accepted",
  refused: "Refused",
  failed: "Failed",
  address_changed: "Address changed",
  dns_verified: "DNS answers",
  dns_mismatch: "DNS mismatch",
  released: "Released",
  certificate_renewed: "Certificate renewed",
  certificate_failed: "Certificate problem",
};

function showEvents(list) {
  lastEvents = list;
  const ol = $("events");
  ol.replaceChildren(...list.slice(0, 20).map((e) => {
    const li = document.createElement("li");
    li.className = "kind-" + e.kind;
    const when = document.createElement("span");
    when.append(timeElement(e.at));
    const what = document.createElement("span");
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = (EVENT_WORDS[e.kind] || e.kind) + (e.count > 1 ? " (" + e.count + "×)" : "") + ": ";
    what.append(kind, document.createTextNode(e.message));
    li.append(when, what);
    return li;
  }));
  $("no-events").hidden = list.length > 0;
}

async function refreshStatus() {
  try {
    const [s, events] = await Promise.all([rpc("status"), rpc("events")]);
    showStatus(s);
    showEvents(events);
  } catch (e) {
    $("dot").className = "dot";
    $("state").textContent = "The daemon does not answer";
    $("reason").textContent = e.message;
  }
}

async function updateNow() {
  const button = $("update-now");
  button.disabled = true;
  say("action-msg", "Checking…");
  try {
    showStatus(await rpc("update_now"));
    say("action-msg", "");
    refreshStatus();
  } catch (e) {
    say("action-msg", e.message, "bad");
  } finally {
    button.disabled = false;
  }
}

// ---- release -----------------------------------------------------------

function askRelease() {
  const fqdn = lastStatus && lastStatus.registered ? lastStatus.registered.fqdn : "this name";
  $("release-text").textContent = "The pub will stop answering for " + fqdn +
    " and another Pi may take it. This Pi will not register it again until you set it up again.";
  $("release-dialog").showModal();
  $("release-cancel").focus();
}

async function confirmRelease() {
  $("release-dialog").close();
  say("action-msg", "Releasing…");
  try {
    showStatus(await rpc("release", { confirm: true }));
    say("action-msg", "Released.", "ok");
    $("name").value = "";
    refreshStatus();
    loadPubs();
  } catch (e) {
    say("action-msg", e.message, "bad");
  }
  $("release").hidden ? $("update-now").focus() : $("release").focus();
}

// ---- setup: pubs --------------------------------------------------------

function selectedPub() {
  const r = document.querySelector('input[name="pub"]:checked');
  if (!r) return undefined;
  return pubs[Number(r.value)];
}

function showSuffix() {
  const p = selectedPub();
  $("suffix").textContent = p ? "." + p.domain : "";
  for (const card of document.querySelectorAll(".pub")) {
    card.classList.toggle("chosen", !!card.querySelector("input:checked"));
  }
}

function detail(dl, term, ...content) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.append(...content);
  dl.append(dt, dd);
  return dd;
}

function pubCard(p, i, chosen) {
  const card = document.createElement("div");
  card.className = "pub" + (p.conflict ? " conflict" : "");
  card.dataset.pubId = p.pub_id;
  const choose = document.createElement("div");
  choose.className = "choose";
  const radio = document.createElement("input");
  radio.type = "radio";
  radio.name = "pub";
  radio.id = "pub-" + i;
  radio.value = String(i);
  radio.checked = chosen;
  radio.setAttribute("aria-describedby", "pub-" + i + "-details");
  const label = document.createElement("label");
  label.htmlFor = radio.id;
  label.textContent = p.domain;
  choose.append(radio, label);
  const dl = document.createElement("dl");
  dl.id = "pub-" + i + "-details";
  const code = document.createElement("code");
  code.className = "pub-id";
  code.textContent = p.pub_id;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy the id of the pub for " + p.domain);
  copy.addEventListener("click", () => copyText(p.pub_id, copy));
  detail(dl, "Pub id", code, copy);
  const url = document.createElement("span");
  url.className = "pub-url";
  url.textContent = p.url;
  detail(dl, "URL", url);
  const reach = document.createElement("span");
  reach.className = "reachable";
  reach.textContent = "checking…";
  detail(dl, "Reachable", reach);
  detail(dl, "Found in", document.createTextNode(p.origin === "config" ? "this Pi's config" : "the pub's Scuttlebutt announcement"));
  card.append(choose, dl);
  if (p.conflict) {
    const warn = document.createElement("p");
    warn.className = "warning";
    const others = (p.same_domain_as || []).join(", ");
    warn.textContent = "Warning: another pub (" + others + ") also claims " + p.domain +
      ". Only one of them really serves it: choose the one whose id the pub's operator gave you.";
    card.append(warn);
  }
  checkReachable(p, reach);
  return card;
}

async function checkReachable(p, el) {
  try {
    const r = await rpc("check_pub", { pub_id: p.pub_id });
    if (r.reachable && r.domain_matches === false) {
      el.textContent = "answers, but serves " + r.domain + ", not " + p.domain;
      el.className = "reachable reachable-no";
    } else if (r.reachable) {
      el.textContent = "yes";
      el.className = "reachable reachable-yes";
    } else {
      el.textContent = "no: " + (r.detail || "no answer");
      el.className = "reachable reachable-no";
    }
  } catch (e) {
    el.textContent = "unknown: " + e.message;
    el.className = "reachable reachable-no";
  }
}

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch (_) {
    // No clipboard API (plain HTTP to a name other than localhost):
    // select the id so the owner can copy it by hand.
    const code = button.previousElementSibling;
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
  }
  button.textContent = ok ? "Copied" : "Selected";
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

async function loadPubs() {
  say("pub-msg", "Looking for pubs…");
  try {
    const [list, cfg] = await Promise.all([rpc("list_pubs"), rpc("get_config")]);
    config = cfg;
    const previous = selectedPub();
    pubs = list;
    // Only the owner chooses: the configured pub (or the one they just
    // picked) stays chosen; otherwise nothing is, even with one pub.
    const keep = previous ? previous.pub_id : cfg.registration.pub_id;
    $("pubs").replaceChildren(...list.map((p, i) => pubCard(p, i, p.pub_id === keep)));
    if (cfg.registration.name && !$("name").value) $("name").value = cfg.registration.name;
    if (!list.length) {
      say("pub-msg", "No pub offering dynamic DNS is known yet. Accept an invite first; its announcement may take a minute to arrive.", "bad");
    } else if (list.some((p) => p.conflict)) {
      say("pub-msg", "More than one pub claims the same domain. Pick the one whose id its operator gave you.", "bad");
    } else {
      say("pub-msg", list.length === 1 ? "One pub found." : list.length + " pubs found.");
    }
    showSuffix();
    if ($("name").value.trim()) checkNameSoon();
  } catch (e) {
    say("pub-msg", "Cannot list pubs: " + e.message, "bad");
  }
}

// ---- setup: subdomain ---------------------------------------------------

/// The label rule, checked as the owner types (the daemon and the pub
/// check it again).
function ruleProblem(name) {
  if (name.length > 63) return "it is longer than 63 characters";
  if (/[A-Z]/.test(name)) return "use lowercase letters only";
  if (/[^a-z0-9-]/.test(name)) return "use only letters a–z, digits and hyphens";
  if (name.startsWith("-") || name.endsWith("-")) return "it may not start or end with a hyphen";
  return null;
}

// The pub's reasons for a name, in words.
const NAME_REASONS = {
  name_taken: "another Pi has registered it",
  reserved_name: "the pub keeps it for itself",
  invalid_name: "it is not a valid subdomain",
};

let checkTimer;
let checkSeq = 0;
function checkNameSoon() {
  clearTimeout(checkTimer);
  const name = $("name").value.trim();
  const seq = ++checkSeq;
  if (!name) return say("name-msg", "");
  const problem = ruleProblem(name);
  if (problem) return say("name-msg", name + " is not a valid subdomain: " + problem + ".", "bad");
  const p = selectedPub();
  if (!p) return say("name-msg", "Pick a pub above to check " + name + ".", "");
  say("name-msg", "Checking…");
  checkTimer = setTimeout(async () => {
    try {
      const r = await rpc("check_name", { name, pub_id: p.pub_id });
      if (seq !== checkSeq) return;
      if (r.yours) say("name-msg", r.fqdn + " is already yours.", "ok");
      else if (r.available) say("name-msg", r.fqdn + " is available.", "ok");
      else {
        // The pub answers with a wire code (name_taken); the daemon's own
        // checks answer in words already.
        const why = NAME_REASONS[r.reason] || r.reason;
        say("name-msg", (r.fqdn || name + "." + p.domain) + " is not available" + (why ? ": " + why : "."), "bad");
      }
    } catch (e) {
      if (seq === checkSeq) say("name-msg", "Cannot check: " + e.message, "bad");
    }
  }, 300);
}

async function acceptInvite(ev) {
  ev.preventDefault();
  const invite = $("invite").value.trim();
  if (!invite) return say("invite-msg", "Paste an invite code first.", "bad");
  say("invite-msg", "Joining the pub…");
  try {
    await rpc("accept_invite", { invite });
    say("invite-msg", "Invite accepted. Waiting for the pub's announcement…", "ok");
    $("invite").value = "";
    waitForNewPubs(pubs.length);
  } catch (e) {
    say("invite-msg", e.message, "bad");
  }
}

/// After an invite: looks for pubs every 2 s for a minute, until one more
/// than before is listed.
async function waitForNewPubs(before) {
  for (let i = 0; i < 30; i++) {
    await loadPubs();
    if (pubs.length > before) {
      say("invite-msg", "Invite accepted; the pub is listed below.", "ok");
      return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  say("invite-msg", "Invite accepted, but no new announcement arrived yet. Look for pubs again in a minute.", "bad");
}

async function save(ev) {
  ev.preventDefault();
  const p = selectedPub();
  const name = $("name").value.trim();
  if (!p) return say("save-msg", "Pick a pub first.", "bad");
  if (!name) return say("save-msg", "Choose a subdomain first.", "bad");
  const problem = ruleProblem(name);
  if (problem) return say("save-msg", name + " is not a valid subdomain: " + problem + ".", "bad");
  const params = { name, pub_id: p.pub_id };
  if (p.origin === "config") {
    params.url = p.url;
    params.domain = p.domain;
  }
  say("save-msg", "Saving…");
  $("save").disabled = true;
  try {
    await rpc("configure", params);
    say("save-msg", "Saved.", "ok");
    say("action-msg", "Saved. Registering " + name + "." + p.domain + "…", "ok");
    showView("status");
    // The daemon checks at once after a config change; follow it closely
    // for a few seconds instead of waiting for the next poll.
    for (let i = 0; i < 10; i++) {
      await refreshStatus();
      if (lastStatus && lastStatus.state !== "working" && lastStatus.state !== "unconfigured") break;
      await new Promise((r) => setTimeout(r, 700));
    }
    say("action-msg", "");
  } catch (e) {
    say("save-msg", e.message, "bad");
  } finally {
    $("save").disabled = false;
  }
}

// ---- views ----------------------------------------------------------------

function showView(view) {
  const setup = view === "setup";
  // A new view starts at its top (Save is at the bottom of Setup).
  if ($("setup-view").hidden === setup) window.scrollTo(0, 0);
  $("status-view").hidden = setup;
  $("setup-view").hidden = !setup;
  for (const [id, on] of [["nav-status", !setup], ["nav-setup", setup]]) {
    if (on) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
}

function viewFromHash() {
  showView(location.hash === "#setup" ? "setup" : "status");
}

document.addEventListener("DOMContentLoaded", () => {
  $("invite-form").addEventListener("submit", acceptInvite);
  $("setup-form").addEventListener("submit", save);
  $("refresh-pubs").addEventListener("click", loadPubs);
  $("pubs").addEventListener("change", () => { showSuffix(); checkNameSoon(); });
  $("name").addEventListener("input", checkNameSoon);
  $("update-now").addEventListener("click", updateNow);
  $("release").addEventListener("click", askRelease);
  $("release-cancel").addEventListener("click", () => { $("release-dialog").close(); $("release").focus(); });
  $("release-confirm").addEventListener("click", confirmRelease);
  window.addEventListener("hashchange", viewFromHash);
  const hadHash = location.hash !== "";
  viewFromHash();
  refreshStatus().then(() => {
    // A Pi that is not set up yet opens on Setup.
    if (!hadHash && lastStatus && lastStatus.state === "unconfigured") showView("setup");
  });
  loadPubs();
  setInterval(refreshStatus, 3000);
  setInterval(tickTimes, 1000);
});
