// peach-dyndns panel: talks JSON-RPC to the daemon on the same origin.
"use strict";

const $ = (id) => document.getElementById(id);
let nextId = 1;
let pubs = [];

async function rpc(method, params) {
  const body = { jsonrpc: "2.0", id: nextId++, method };
  if (params !== undefined) body.params = params;
  const res = await fetch("rpc", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await res.json();
  if (answer.error) throw new Error(answer.error.message);
  return answer.result;
}

function say(id, text, kind) {
  const el = $(id);
  el.textContent = text || "";
  el.className = "msg" + (kind ? " " + kind : "");
}

function when(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : "—";
}

const WORDS = {
  online: "Online: the name points at this Pi",
  working: "Working…",
  error: "Error",
  unconfigured: "Not set up yet",
  disabled: "Disabled",
};

function showStatus(s) {
  $("dot").className = "dot " + s.state;
  $("state").textContent = WORDS[s.state] || s.state;
  $("fqdn").textContent = s.fqdn || s.name || "—";
  const addrs = [s.current_ip || s.ip, s.current_ip6 || s.ip6].filter(Boolean);
  $("addresses").textContent = addrs.length ? addrs.join(", ") : "—";
  $("dns").textContent = s.dns_verified ? "answers with this address" : (s.dns_detail || "not checked yet");
  $("last-success").textContent = when(s.last_success_at);
  $("next-check").textContent = s.parked ? "after the setup changes" : when(s.next_check_at);
  const err = $("error");
  if (s.last_error) {
    err.textContent = s.last_error;
    err.hidden = false;
  } else {
    err.hidden = true;
  }
}

async function refreshStatus() {
  try {
    showStatus(await rpc("status"));
  } catch (e) {
    $("state").textContent = "The daemon does not answer: " + e.message;
    $("dot").className = "dot";
  }
}

function selectedPub() {
  const v = $("pub").value;
  if (v === "") return undefined;
  const i = Number(v);
  return Number.isInteger(i) ? pubs[i] : undefined;
}

function showSuffix() {
  const p = selectedPub();
  $("suffix").textContent = p ? "." + p.domain : "";
}

async function loadPubs() {
  say("pub-msg", "Looking for pubs…");
  try {
    const [list, config] = await Promise.all([rpc("list_pubs"), rpc("get_config")]);
    pubs = list;
    const select = $("pub");
    select.replaceChildren();
    const configured = list.findIndex((p) => p.pub_id === config.registration.pub_id);
    // With more than one pub nothing is chosen for the owner (two may
    // claim the same domain), unless the owner chose one already.
    if (list.length > 1 && configured < 0) {
      const none = document.createElement("option");
      none.value = "";
      none.textContent = "Choose a pub…";
      none.selected = true;
      select.append(none);
    }
    list.forEach((p, i) => {
      const opt = document.createElement("option");
      opt.value = String(i);
      // The full URL and id: the domain alone does not say which pub it is.
      opt.textContent = p.domain + " — " + p.url + " — " + p.pub_id +
        (p.conflict ? " — another pub claims this domain too" : "");
      if (i === configured || (list.length === 1 && configured < 0)) opt.selected = true;
      select.append(opt);
    });
    if (config.registration.name && !$("name").value) $("name").value = config.registration.name;
    const conflict = list.some((p) => p.conflict);
    if (!list.length) {
      say("pub-msg", "No pub offering dynamic DNS is known yet. Accept an invite first, then refresh.", "bad");
    } else if (conflict) {
      say("pub-msg", "More than one pub claims the same domain. Pick the one whose id its operator gave you.", "bad");
    } else {
      say("pub-msg", "");
    }
    showSuffix();
  } catch (e) {
    say("pub-msg", "Cannot list pubs: " + e.message, "bad");
  }
}

// The pub's reasons for a name, in words.
const NAME_REASONS = {
  name_taken: "another Pi has registered it",
  reserved_name: "the pub keeps it for itself",
  invalid_name: "it is not a valid subdomain",
};

let checkTimer;
function checkNameSoon() {
  clearTimeout(checkTimer);
  const name = $("name").value.trim();
  if (!name) return say("name-msg", "");
  checkTimer = setTimeout(async () => {
    const p = selectedPub();
    if (!p) return say("name-msg", "Pick a pub first.", "bad");
    say("name-msg", "Checking…");
    try {
      const r = await rpc("check_name", { name, pub_id: p.pub_id });
      if ($("name").value.trim() !== name) return;
      if (r.yours) say("name-msg", r.fqdn + " is already yours.", "ok");
      else if (r.available) say("name-msg", r.fqdn + " is available.", "ok");
      else {
        // The pub answers with a wire code (name_taken); the daemon's own
        // checks answer in words already.
        const why = NAME_REASONS[r.reason] || r.reason;
        say("name-msg", (r.fqdn || name) + " is not available" + (why ? ": " + why : "."), "bad");
      }
    } catch (e) {
      say("name-msg", "Cannot check: " + e.message, "bad");
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
    say("invite-msg", "Invite accepted. The pub's announcement may take a few seconds to arrive.", "ok");
    $("invite").value = "";
    setTimeout(loadPubs, 3000);
  } catch (e) {
    say("invite-msg", e.message, "bad");
  }
}

async function save(ev) {
  ev.preventDefault();
  const p = selectedPub();
  const name = $("name").value.trim();
  if (!p) return say("save-msg", "Pick a pub first.", "bad");
  const params = { name, pub_id: p.pub_id };
  if (p.origin === "config") {
    params.url = p.url;
    params.domain = p.domain;
  }
  say("save-msg", "Saving…");
  try {
    await rpc("configure", params);
    say("save-msg", "Saved. Registering…", "ok");
    showStatus(await rpc("update_now"));
    say("save-msg", "Saved.", "ok");
  } catch (e) {
    say("save-msg", e.message, "bad");
  }
}

async function updateNow() {
  $("update-now").disabled = true;
  try {
    showStatus(await rpc("update_now"));
  } catch (e) {
    $("error").textContent = e.message;
    $("error").hidden = false;
  } finally {
    $("update-now").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("invite-form").addEventListener("submit", acceptInvite);
  $("setup-form").addEventListener("submit", save);
  $("refresh-pubs").addEventListener("click", loadPubs);
  $("pub").addEventListener("change", () => { showSuffix(); checkNameSoon(); });
  $("name").addEventListener("input", checkNameSoon);
  $("update-now").addEventListener("click", updateNow);
  refreshStatus();
  loadPubs();
  setInterval(refreshStatus, 5000);
});
