// The sampling console: connected clients, requests and tool calls' rounds from one EventSource
// (a snapshot, then changes), a form that sends a request to a chosen client, and each request's
// live state with a countdown to its deadline.
"use strict";

const $ = (selector) => document.querySelector(selector);
const clients = new Map();
const requests = new Map();
// Tool calls by id, each with its rounds by number (a round arrives when asked, again when
// answered; with several instances, the two may come from different ones) and its outcome.
const calls = new Map();

function renderClients() {
  const rows = [...clients.values()];
  $("#no-clients").hidden = rows.length > 0;
  $("#clients tbody").innerHTML = "";
  for (const c of rows) {
    const tr = document.createElement("tr");
    tr.dataset.handle = c.handle;
    for (const text of [c.name, c.version, c.protocol, c.transport, c.capabilities && c.capabilities.sampling ? "yes" : "no"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    $("#clients tbody").append(tr);
  }
  const chosen = $("#client").value;
  $("#client").innerHTML = "";
  for (const c of rows.filter((c) => c.capabilities && c.capabilities.sampling)) {
    const option = document.createElement("option");
    option.value = c.handle;
    option.textContent = `${c.name} ${c.version} (${c.handle.slice(0, 8)})`;
    $("#client").append(option);
  }
  if (chosen) $("#client").value = chosen;
}

function describe(r) {
  const text = r.params.messages.map((m) => (m.content && m.content.text) || `[${m.content && m.content.type}]`).join(" / ");
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function renderRequests() {
  const list = [...requests.values()].sort((a, b) => b.sent_at - a.sent_at);
  $("#requests").innerHTML = "";
  for (const r of list) {
    const li = document.createElement("li");
    li.dataset.id = r.id;
    li.dataset.state = r.state;
    const head = document.createElement("div");
    const state = document.createElement("strong");
    state.className = "state";
    state.textContent = r.state.replace("_", " ");
    head.append(state, ` ${new Date(r.sent_at).toLocaleTimeString()} · ${describe(r)}`);
    if (["sent", "awaiting_approval", "generating"].includes(r.state)) {
      const countdown = document.createElement("span");
      countdown.className = "countdown small";
      countdown.dataset.deadline = String(r.deadline_at);
      head.append(" · ", countdown);
    }
    li.append(head);
    if (r.result) {
      const out = document.createElement("pre");
      out.className = "result";
      out.textContent = (r.result.content && r.result.content.text) || JSON.stringify(r.result.content);
      const meta = document.createElement("div");
      meta.className = "small";
      meta.textContent = `model ${r.result.model} · stop ${r.result.stopReason || "n/a"} · ${r.duration_ms} ms`;
      li.append(out, meta);
    }
    if (r.error) {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = r.error.message;
      li.append(err);
    }
    $("#requests").append(li);
  }
  tick();
}

function callOf(record) {
  let call = calls.get(record.call);
  if (!call) {
    call = { tool: record.tool, era: record.era, client: record.client, at: record.at, rounds: new Map(), finished: null };
    calls.set(record.call, call);
  }
  return call;
}

function keepRound(round) {
  const call = callOf(round);
  const known = call.rounds.get(round.n);
  // An answered round is never replaced by the same round still waiting (a snapshot may repeat it).
  if (!known || known.answer === null || round.answer !== null) call.rounds.set(round.n, round);
}

function keepRecord(record) {
  if (record.kind === "tool_finished" || record.outcome) callOf(record).finished = record;
  else keepRound(record);
}

function renderCalls() {
  const list = [...calls.entries()].sort((a, b) => b[1].at - a[1].at).slice(0, 50);
  $("#no-calls").hidden = list.length > 0;
  $("#calls").innerHTML = "";
  for (const [id, call] of list) {
    const li = document.createElement("li");
    li.dataset.call = id;
    li.dataset.state = call.finished ? call.finished.outcome : "asking";
    const head = document.createElement("div");
    const tool = document.createElement("strong");
    tool.textContent = call.tool;
    head.append(tool, ` · ${call.era} · ${call.client}${call.finished ? ` · ${call.finished.outcome}` : ""}`);
    const rounds = document.createElement("ol");
    rounds.className = "rounds small";
    for (const r of [...call.rounds.values()].sort((a, b) => a.n - b.n)) {
      const item = document.createElement("li");
      const where = r.answered_on && r.answered_on !== r.asked_on
        ? `asked on ${r.asked_on}, answered on ${r.answered_on}` : `on ${r.asked_on}`;
      const took = r.ms === null ? "" : ` · ${r.ms} ms`;
      item.textContent = `${r.asked.join(", ")} → ${r.answer === null ? "waiting…" : r.answer}${took} · ${where}`;
      rounds.append(item);
    }
    li.append(head, rounds);
    if (call.finished) {
      const out = document.createElement("pre");
      out.className = "result";
      out.textContent = call.finished.text;
      li.append(out);
    }
    $("#calls").append(li);
  }
}

// Countdowns to each waiting request's deadline.
function tick() {
  for (const span of document.querySelectorAll(".countdown")) {
    const left = Math.max(0, Math.round((Number(span.dataset.deadline) - Date.now()) / 1000));
    span.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
  }
}
setInterval(tick, 1000);

$("#send-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#send-error").textContent = "";
  const body = {
    client: $("#client").value,
    messages: [{ role: "user", content: { type: "text", text: $("#message").value } }],
    maxTokens: Number($("#max-tokens").value),
  };
  if ($("#system").value) body.systemPrompt = $("#system").value;
  if ($("#temperature").value !== "") body.temperature = Number($("#temperature").value);
  const hints = $("#hints").value.split(",").map((h) => h.trim()).filter(Boolean);
  if (hints.length) body.modelPreferences = { hints: hints.map((name) => ({ name })) };
  const response = await fetch("/sampling/requests", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    try { const err = await response.json(); $("#send-error").textContent = `${response.status} ${err.error.code}: ${err.error.message}`; }
    catch { $("#send-error").textContent = `HTTP ${response.status}`; }
  }
});

function connect() {
  const status = $("#conn-status");
  const source = new EventSource("/sampling/events");
  source.onopen = () => { status.dataset.state = "open"; status.textContent = "live"; };
  source.onerror = () => { status.dataset.state = "connecting"; status.textContent = "reconnecting…"; };
  const on = (name, handle) => source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  on("snapshot", (s) => {
    clients.clear(); requests.clear();
    for (const c of s.clients) clients.set(c.handle, c);
    for (const r of s.requests) requests.set(r.id, r);
    calls.clear();
    for (const record of s.rounds || []) keepRecord(record);
    renderClients(); renderRequests(); renderCalls();
  });
  on("client_connected", (c) => { clients.set(c.handle, c); renderClients(); });
  on("client_disconnected", (c) => { clients.delete(c.handle); renderClients(); });
  const request = (r) => { requests.set(r.id, r); renderRequests(); };
  on("request_sent", request);
  on("request_progress", request);
  on("request_finished", request);
  on("tool_round", (r) => { keepRound(r); renderCalls(); });
  on("tool_finished", (f) => { callOf(f).finished = f; renderCalls(); });
}
connect();
