// The remote execution page: start a run by POST, watch it over one EventSource, send stdin and
// signals by POST. The run's id lives in the URL (#run=<id>), so a reload reattaches to the same
// run and the server replays its whole output.
"use strict";

const $ = (selector) => document.querySelector(selector);
let source = null;
let current = null; // { id, lastId, terminal }
const terminalRuns = new Set(); // runs this page started in a terminal

// ANSI colour and cursor sequences are stripped: the output pane is plain text.
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;

function lineNumbers() {
  const lines = $("#code").value.split("\n").length;
  $("#gutter").textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n");
}
$("#code").addEventListener("input", lineNumbers);
$("#code").addEventListener("scroll", () => { $("#gutter").scrollTop = $("#code").scrollTop; });
lineNumbers();

async function errorText(response) {
  try { const body = await response.json(); return `${response.status} ${body.error.code}: ${body.error.message}`; }
  catch { return `HTTP ${response.status}`; }
}

function post(path, body) {
  return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

$("#run-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#run-error").textContent = "";
  const language = $("#language").value, code = $("#code").value;
  const body = language === "argv"
    ? { argv: code.trim().split(/\s+/) }
    : { language, code };
  const timeout = Number($("#timeout").value);
  if (timeout) body.timeout_s = timeout; // else the server's default
  if ($("#terminal").checked) Object.assign(body, { pty: true }, terminalSize());
  const response = await post("/exec/runs", body);
  if (!response.ok) { $("#run-error").textContent = await errorText(response); return; }
  const { id } = await response.json();
  location.hash = `run=${id}`; // hashchange attaches
  terminalRuns.add(id);
  loadRuns();
});

// The terminal size that fits the output pane, in characters of its monospace font.
function terminalSize() {
  const pane = $("#output");
  const probe = document.createElement("span");
  probe.textContent = "M".repeat(10);
  pane.append(probe);
  const charWidth = probe.getBoundingClientRect().width / 10 || 8;
  probe.remove();
  const cols = Math.max(20, Math.min(500, Math.floor((pane.clientWidth - 16) / charWidth)));
  return { rows: 24, cols };
}
window.addEventListener("resize", () => {
  if (current && current.terminal) post(`/exec/runs/${current.id}/resize`, terminalSize());
});

function setStatus(state, text) {
  const status = $("#run-status");
  status.dataset.state = state; status.textContent = text;
}

function attach(id, fromId = 0) {
  if (source) source.close();
  if (!current || current.id !== id) {
    current = { id, lastId: 0, terminal: terminalRuns.has(id) };
    $("#output").textContent = "";
    $("#exit").textContent = "";
    $("#exit").dataset.reason = "";
  }
  $("#run-view").hidden = false;
  $("#run-title").textContent = `Run ${id.slice(0, 8)}`;
  setStatus("connecting", "connecting…");
  const query = fromId ? `?lastEventId=${fromId}` : "";
  source = new EventSource(`/exec/runs/${id}/events${query}`);
  source.onopen = () => setStatus("open", "running");
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) setStatus("closed", $("#exit").dataset.reason ? "finished" : "disconnected");
  };
  const seen = (e) => { current.lastId = Number(e.lastEventId) || current.lastId; };
  const append = (kind) => (e) => {
    seen(e);
    const span = document.createElement("span");
    span.className = kind;
    // A terminal ends lines with CR LF; a lone CR (a redrawn line) is dropped in this plain pane.
    span.textContent = JSON.parse(e.data).text.replace(ANSI, "").replace(/\r\n/g, "\n").replace(/\r/g, "");
    $("#output").append(span);
    $("#output").scrollTop = $("#output").scrollHeight;
  };
  source.addEventListener("stdout", append("stdout"));
  source.addEventListener("stderr", append("stderr"));
  source.addEventListener("dropped", (e) => {
    seen(e);
    const note = document.createElement("span");
    note.className = "dropped";
    note.textContent = `\n[${JSON.parse(e.data).message}]\n`;
    $("#output").append(note);
  });
  source.addEventListener("exit", (e) => {
    seen(e);
    const exit = JSON.parse(e.data);
    const detail = exit.code != null ? `code ${exit.code}` : exit.signal ? `signal ${exit.signal}` : "";
    const took = exit.duration_ms != null ? ` after ${(exit.duration_ms / 1000).toFixed(1)} s` : "";
    const lost = exit.output_kept === false ? " (output from before the server restarted is not kept)" : "";
    $("#exit").textContent = `Ended: ${exit.reason.replace(/_/g, " ")}${detail ? ` (${detail})` : ""}${took}${lost}`;
    $("#exit").dataset.reason = exit.reason;
    setStatus("closed", "finished");
    source.close();
    loadRuns();
  });
  // Fell behind the live stream: reconnect from the last event this page really has.
  source.addEventListener("resync", () => attach(id, current.lastId));
}

$("#stdin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!current) return;
  const line = $("#stdin").value;
  $("#stdin").value = "";
  const response = await post(`/exec/runs/${current.id}/stdin`, { data: `${line}\n` });
  if (!response.ok) $("#exit").textContent = await errorText(response);
});
$("#eof").addEventListener("click", async () => {
  if (!current) return;
  const response = await post(`/exec/runs/${current.id}/stdin`, { eof: true });
  if (!response.ok) $("#exit").textContent = await errorText(response);
});
for (const [button, signal] of [["#interrupt", "interrupt"], ["#kill", "kill"]]) {
  $(button).addEventListener("click", async () => {
    if (!current) return;
    const response = await post(`/exec/runs/${current.id}/signal`, { signal });
    if (!response.ok) $("#exit").textContent = await errorText(response);
  });
}

async function loadRuns() {
  const response = await fetch("/exec/runs");
  if (!response.ok) return;
  const { runs } = await response.json();
  $("#runs").innerHTML = "";
  for (const run of runs.slice(0, 20)) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#run=${run.id}`;
    link.textContent = `${new Date(run.started_at).toLocaleTimeString()} ${run.label}`;
    li.append(link, ` · ${run.exit ? run.exit.reason.replace(/_/g, " ") : "running"}`);
    li.dataset.id = run.id;
    $("#runs").append(li);
  }
}
$("#refresh").addEventListener("click", loadRuns);

// ---- workflows ----
let workflowSource = null;
let workflowType = "application/json";
let waiting = null; // { workflow, step } while an approval is asked

$("#workflow-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  $("#workflow").value = await file.text();
  workflowType = file.name.endsWith(".toml") ? "application/toml" : "application/json";
});
$("#workflow").addEventListener("input", () => { workflowType = "application/json"; });

$("#workflow-start").addEventListener("click", async () => {
  $("#workflow-error").textContent = "";
  const response = await fetch("/exec/workflows", {
    method: "POST", headers: { "Content-Type": workflowType }, body: $("#workflow").value,
  });
  if (!response.ok) { $("#workflow-error").textContent = await errorText(response); return; }
  const { id } = await response.json();
  watchWorkflow(id);
});

function progress(text, kind) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  li.textContent = text;
  $("#workflow-events").append(li);
  return li;
}

function watchWorkflow(id) {
  if (workflowSource) workflowSource.close();
  $("#workflow-events").innerHTML = "";
  $("#approval").hidden = true;
  workflowSource = new EventSource(`/exec/workflows/${id}/events`);
  const on = (name, handle) => workflowSource.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  on("workflow_started", (w) => progress(`Workflow ${w.name}: ${w.steps.join(" → ")}`, "started"));
  on("step_started", (s) => {
    const li = progress(`Step ${s.name} running… `, "step");
    const link = document.createElement("a");
    link.href = `#run=${s.run}`; link.textContent = "output";
    li.append(link);
  });
  on("step_finished", (s) => progress(`Step ${s.name}: ${s.exit.reason}${s.exit.code != null ? ` (code ${s.exit.code})` : ""}`, "step"));
  on("approval_requested", (a) => {
    waiting = { workflow: id, step: a.step };
    progress(`Step ${a.name} waits for approval until ${new Date(a.expires_at).toLocaleTimeString()}`, "approval");
    $("#approval-prompt").textContent = a.prompt;
    $("#approval-comment").value = "";
    $("#approval").hidden = false;
  });
  on("approval_decided", (d) => {
    waiting = null;
    $("#approval").hidden = true;
    progress(`Step ${d.name}: ${d.decision}${d.by ? ` by ${d.by}` : ""}${d.comment ? `: ${d.comment}` : ""}`, "decision");
  });
  on("workflow_finished", (f) => {
    progress(`Finished: ${f.outcome}. ${f.message}`, `finished-${f.outcome}`);
    workflowSource.close();
  });
}

async function decide(decision) {
  if (!waiting) return;
  const { workflow, step } = waiting;
  const response = await post(`/exec/workflows/${workflow}/approvals/${step}`, {
    decision, comment: $("#approval-comment").value,
  });
  if (!response.ok) $("#workflow-error").textContent = await errorText(response);
}
$("#approve").addEventListener("click", () => decide("approve"));
$("#reject").addEventListener("click", () => decide("reject"));

function fromHash() {
  const match = location.hash.match(/^#run=([0-9a-f]+)$/);
  if (match) attach(match[1]);
}
window.addEventListener("hashchange", fromHash);
fromHash();
loadRuns();
