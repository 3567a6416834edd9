// The API Hooks page: the hooks list, the editor with its test panel, and
// each hook's history. Everything goes through the daemon's /api/.
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;       // the last /api/state
let methods = [];       // the last /api/methods
let editing = null;     // the hook being edited, or null when creating
let view = null;        // the CodeMirror view
let lastCheck = null;   // the last validation: {ok, error, line, column}
const langConf = new CM.Compartment();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state ? state.csrf : "";
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { error: resp.statusText }; }
  if (!resp.ok) {
    const err = new Error(data && data.error ? data.error : resp.statusText);
    err.status = resp.status;
    err.data = data;
    throw err;
  }
  return data;
}

// ---- the list ----

function health(h) {
  // The daemon does not run a hook on a service it does not hook, whatever its document.
  if (h.ignored) return el("span", { class: "health warn" }, "ignored", el("small", {}, h.error ? h.ignored + "\n" + h.error : h.ignored));
  if (h.broken) return el("span", { class: "health bad" }, "broken", el("small", {}, h.error));
  if (h.error && h.running) return el("span", { class: "health warn" }, "invalid; revision " + h.running + " still runs", el("small", {}, h.error));
  if (h.error) return el("span", { class: "health bad" }, "invalid", el("small", {}, h.error));
  if (h.quarantined) return el("span", { class: "health bad" }, "quarantined", el("small", {}, h.quarantined));
  if (!h.enabled) return el("span", { class: "health off" }, "disabled");
  if (state.revision && h.revision > state.revision) return el("span", { class: "health warn" }, "not loaded yet");
  return el("span", { class: "health ok" }, "ok");
}

function renderDaemon() {
  const d = $("daemon");
  d.textContent = "";
  // With etcdError, the page could not read etcd: it has no etcd revision,
  // and whatever the daemon last knew, it does not follow etcd now.
  d.append("loaded revision ", el("b", { id: "loaded-revision" }, state.revision), state.etcdError ? " · " : " · etcd revision " + state.etcdRevision + " · ");
  d.append(state.synced && !state.etcdError ? el("span", {}, "following etcd") : el("span", { class: "bad" }, state.fromSnapshot ? "etcd unreachable: serving the local snapshot" : "etcd unreachable"));
  if (state.lastSync) d.append(" · last sync " + new Date(state.lastSync).toLocaleTimeString());
  if (state.daemons && state.daemons.length) {
    d.append(" · daemons: ");
    for (const x of state.daemons) {
      let label = x.name;
      if (x.address) label += " (" + x.address + ")";
      if (x.revision) label += " at " + x.revision;
      if (x.synced === false) label += ", not synced";
      d.append(el("span", { class: "daemon-entry", title: x.value }, label + "  "));
    }
  }
  if (state.readOnly) d.append(" · ", el("b", {}, "read-only"));
  $("create").hidden = state.readOnly;
}

function renderList() {
  const list = $("list");
  list.textContent = "";
  if (!state.groups.length) {
    list.append(el("div", { class: "empty" }, "No hooks yet. Click ", el("b", {}, "+ Create"), " to attach one to a method."));
    return;
  }
  for (const g of state.groups) {
    const rows = g.hooks.map((h) => el("tr", { "data-key": h.key, class: h.enabled ? "" : "off" },
      el("td", {}, el("span", { class: "phase " + h.phase }, h.phase)),
      el("td", { class: "name" }, h.name),
      el("td", { class: "enabled" }, h.error && !h.running && !h.enabled ? "–" : (h.enabled ? "yes" : "no")),
      el("td", {}, h.order),
      el("td", {}, h.description || ""),
      el("td", { class: "revision" }, h.revision),
      el("td", {}, health(h)),
      el("td", { class: "actions-cell" },
        el("button", { type: "button", "data-action": "edit", onclick: () => openEditor(h) }, state.readOnly ? "View" : "Edit"),
        state.readOnly || h.error ? null : el("button", { type: "button", "data-action": h.enabled ? "disable" : "enable", onclick: () => setEnabled(h, !h.enabled) }, h.enabled ? "Disable" : "Enable"),
        el("button", { type: "button", "data-action": "history", onclick: () => openHistory(h) }, "History"),
        state.readOnly ? null : el("button", { type: "button", class: "danger", "data-action": "delete", onclick: () => del(h) }, "Delete"),
      )));
    list.append(el("div", { class: "group", "data-target": g.target },
      el("h3", {}, g.target),
      el("table", {}, el("thead", {}, el("tr", {}, ["Phase", "Name", "Enabled", "Order", "Description", "Revision", "Health", ""].map((t) => el("th", {}, t)))),
        el("tbody", {}, rows))));
  }
}

async function refresh() {
  try {
    state = await api("GET", "/api/state");
    $("banner").hidden = !state.etcdError;
    if (state.etcdError) $("banner").textContent = "Cannot read the hooks in etcd (" + state.etcdError + "): these are the hooks this daemon runs from memory.";
  } catch (e) {
    $("banner").hidden = false;
    $("banner").textContent = "Cannot read the hooks: " + e.message;
    return;
  }
  renderDaemon();
  renderList();
}

async function setEnabled(h, enabled) {
  try {
    await api("POST", "/api/enabled", { key: h.key, revision: h.revision, enabled });
  } catch (e) { alertError(e); }
  await refresh();
}

async function del(h) {
  if (!confirm("Delete hook " + h.key + "? Calls stop running it at once.")) return;
  try {
    await api("DELETE", "/api/hooks", { key: h.key, revision: h.revision });
  } catch (e) { alertError(e); }
  await refresh();
}

function alertError(e) {
  $("banner").hidden = false;
  $("banner").textContent = e.message;
}

// ---- the editor ----

function keyOf() {
  return $("f-method").value + "/" + $("f-phase").value + "/" + $("f-name").value.trim();
}

function documentOf() {
  const d = { script: view.state.doc.toString() };
  if ($("f-lang").value === "ts") d.lang = "ts";
  const p = $("f-params").value.trim();
  if (p && p !== "{}") {
    try { d.params = JSON.parse(p); } catch (e) { throw new Error("params: not valid JSON: " + e.message); }
  }
  if (!$("f-enabled").checked) d.enabled = false;
  const order = parseInt($("f-order").value || "0", 10);
  if (order) d.order = order;
  if ($("f-timeout").value.trim()) d.timeout = $("f-timeout").value.trim();
  if ($("f-onerror").value) d.onError = $("f-onerror").value;
  if ($("f-description").value.trim()) d.description = $("f-description").value.trim();
  if ($("f-isolation").value) d.isolation = $("f-isolation").value;
  if ($("f-style").value) d.style = $("f-style").value;
  // The page does not edit a hook's owner (its team's manifest does): an
  // edit keeps it.
  if (editing && editing.owner) d.owner = editing.owner;
  return d;
}

function showCheck(res) {
  lastCheck = res;
  const diag = $("f-diag");
  diag.className = "diag " + (res.ok ? "ok" : "bad");
  diag.textContent = res.ok ? "✓ compiles" : res.error;
}

// check validates the form with the daemon's own decoding and compiling.
async function check() {
  if (!$("f-name").value.trim()) {
    showCheck({ ok: false, error: "name: required" });
    return lastCheck;
  }
  let doc;
  try { doc = documentOf(); } catch (e) { showCheck({ ok: false, error: e.message }); return lastCheck; }
  try {
    await api("POST", "/api/validate", { key: keyOf(), document: doc });
    showCheck({ ok: true });
  } catch (e) {
    showCheck({ ok: false, error: e.message, line: e.data && e.data.line, column: e.data && e.data.column });
  }
  return lastCheck;
}

// lint is CodeMirror's linter: the daemon's compile errors, placed in the script.
async function lint(v) {
  const res = await check();
  if (res.ok || !res.line) return [];
  const doc = v.state.doc;
  const line = doc.line(Math.min(Math.max(res.line, 1), doc.lines));
  const from = Math.min(line.from + Math.max((res.column || 1) - 1, 0), line.to);
  return [{ from, to: Math.min(from + 1, line.to) > from ? from + 1 : line.to, severity: "error", message: res.error }];
}

function setLang(lang) {
  view.dispatch({ effects: langConf.reconfigure(CM.javascript({ typescript: lang === "ts" })) });
}

const newScript = `// ctx.request is the call's request; return nothing to let it go on.
module.exports = function (ctx) {
  if (ctx.request.toUserId === "guest") {
    return { status: 403, message: "guests may not send events" };
  }
};
`;

function fillMethods(selected) {
  const sel = $("f-method");
  sel.textContent = "";
  const seen = new Set();
  const add = (value, label) => { if (!seen.has(value)) { seen.add(value); sel.append(el("option", { value }, label || value)); } };
  for (const m of methods) add(m.service + "/" + m.method, m.service + "/" + m.method + (m.streaming ? "  (" + m.streaming + ")" : ""));
  for (const m of methods) add(m.service + "/*", m.service + "/*  (every method)");
  add("*/*", "*/*  (every method of every service)");
  if (selected && !seen.has(selected)) add(selected);
  if (selected) sel.value = selected;
}

// openEditor opens the form on hook h, read afresh with its script (the
// state the page polls leaves scripts out), or empty to create one.
async function openEditor(h) {
  let note = "";
  if (h) {
    try {
      h = Object.assign({}, h, await api("GET", "/api/hook?key=" + encodeURIComponent(h.key)));
    } catch (e) {
      note = "cannot read the hook's script: " + e.message;
    }
  }
  editing = h || null;
  $("history").hidden = true;
  $("editor").hidden = false;
  $("editor-title").textContent = h ? (state.readOnly ? "Hook " : "Edit ") + h.key : "Create a hook";
  fillMethods(h ? h.service + "/" + h.method : null);
  $("f-phase").value = h ? h.phase : "pre";
  $("f-name").value = h ? h.name : "";
  for (const id of ["f-method", "f-phase", "f-name"]) $(id).disabled = !!h;
  $("f-lang").value = h ? h.lang || "js" : "js";
  $("f-params").value = h && h.params ? JSON.stringify(h.params, null, 2) : "{}";
  $("f-description").value = h ? h.description || "" : "";
  $("f-order").value = h ? h.order : 0;
  $("f-timeout").value = h ? h.timeout || "" : "";
  $("f-onerror").value = h ? h.onError || "" : "";
  $("f-isolation").value = h ? h.isolation || "" : "";
  $("f-style").value = h ? h.style || "" : "";
  $("f-owner").textContent = h && h.owner ? "owner: " + h.owner : "";
  $("f-enabled").checked = h ? h.enabled || !!h.error : true;
  $("save").hidden = state.readOnly;
  $("save-msg").textContent = note;
  $("t-result").textContent = "";
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: h ? h.script || "" : newScript } });
  setLang($("f-lang").value);
  $("f-diag").textContent = "";
  $("editor").scrollIntoView({ behavior: "instant", block: "start" });
}

async function save(ev) {
  ev.preventDefault();
  const msg = $("save-msg");
  msg.className = "msg";
  msg.textContent = "checking…";
  const res = await check();
  if (!res.ok) {
    msg.className = "msg bad";
    msg.textContent = "not saved: fix the error above";
    return;
  }
  try {
    const out = await api("PUT", "/api/hooks", { key: keyOf(), document: documentOf(), revision: editing ? editing.revision : 0 });
    msg.textContent = "saved as revision " + out.revision;
    $("editor").hidden = true;
    editing = null;
  } catch (e) {
    msg.className = "msg bad";
    msg.textContent = e.status === 409 && !editing ? "a hook with this key exists already: edit it instead" : e.message;
  }
  await refresh();
}

async function runTest() {
  const out = $("t-result");
  out.textContent = "running…";
  try {
    const body = { key: keyOf(), document: documentOf() };
    for (const [field, id] of [["request", "t-request"], ["response", "t-response"], ["metadata", "t-metadata"]]) {
      const v = $(id).value.trim();
      if (v) {
        try { body[field] = JSON.parse(v); } catch (e) { throw new Error(field + ": not valid JSON: " + e.message); }
      }
    }
    const res = await api("POST", "/api/test", body);
    out.textContent = "outcome: " + res.action + "\n" + JSON.stringify(res, null, 2);
  } catch (e) {
    out.textContent = "error: " + e.message;
  }
}

// ---- history ----

async function openHistory(h, keepMsg) {
  $("editor").hidden = true;
  $("history").hidden = false;
  $("history-title").textContent = "History of " + h.key;
  if (!keepMsg) $("history-msg").textContent = "";
  const rows = $("history-rows");
  rows.textContent = "";
  try {
    const hist = await api("GET", "/api/history?key=" + encodeURIComponent(h.key));
    hist.versions.forEach((v, i) => rows.append(el("tr", { "data-revision": v.revision },
      el("td", {}, v.revision), el("td", {}, v.version), el("td", {}, v.change, v.error ? el("small", { class: "health bad" }, " " + v.error) : null),
      el("td", {}, i === 0 ? "current" : (state.readOnly || v.error ? null : el("button", { type: "button", "data-action": "rollback", onclick: () => rollback(h, v.revision) }, "Roll back to this"))))));
    if (hist.compacted) rows.append(el("tr", {}, el("td", { colspan: 4, class: "msg" }, hist.missing + " older versions were compacted by etcd")));
  } catch (e) {
    $("history-msg").textContent = e.message;
  }
}

async function rollback(h, rev) {
  const cur = state.groups.flatMap((g) => g.hooks).find((x) => x.key === h.key) || h;
  let msg;
  try {
    const out = await api("POST", "/api/rollback", { key: h.key, revision: cur.revision, toRevision: rev });
    msg = "rolled back to revision " + rev + ", now revision " + out.revision + ": " + out.change;
  } catch (e) {
    msg = e.message;
  }
  await refresh();
  const now = state.groups.flatMap((g) => g.hooks).find((x) => x.key === h.key);
  if (now) await openHistory(now, true);
  $("history-msg").textContent = msg;
}

// ---- start ----

async function start() {
  view = new CM.EditorView({
    doc: "",
    extensions: [CM.basicSetup, langConf.of(CM.javascript()), CM.lintGutter(), CM.linter(lint, { delay: 500 })],
    parent: $("f-script"),
  });
  $("create").addEventListener("click", () => openEditor(null));
  $("cancel").addEventListener("click", () => { $("editor").hidden = true; editing = null; });
  $("history-close").addEventListener("click", () => { $("history").hidden = true; });
  $("form").addEventListener("submit", save);
  $("run-test").addEventListener("click", runTest);
  $("f-lang").addEventListener("change", () => setLang($("f-lang").value));
  for (const id of ["f-params", "f-timeout", "f-onerror", "f-isolation", "f-style", "f-name", "f-method", "f-phase", "f-order", "f-lang"]) {
    $(id).addEventListener("change", check);
  }
  await refresh();
  try { methods = await api("GET", "/api/methods"); } catch (e) { methods = []; }
  document.body.dataset.ready = "true";
  setInterval(refresh, 3000);
}

start();
