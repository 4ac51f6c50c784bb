// The remote execution page: start a run by POST, watch it over one EventSource, send stdin and
// signals by POST. The run's id lives in the URL (#run=<id>), so a reload reattaches to the same
// run and the server replays its whole output.
//
// A run started in a terminal (a PTY on the server) is shown in xterm.js: every key goes raw to
// the run's stdin (Ctrl-C, Tab and the arrows included, so the PTY and the program handle them as
// in any terminal) and the output is written raw, colours and cursor moves included, so the
// replay after a reload redraws the screen. A plain run keeps its text view.
"use strict";

const $ = (selector) => document.querySelector(selector);
let source = null;
let current = null; // { id, lastId, terminal }
const terminalRuns = new Set(); // runs this page started in a terminal

// ANSI colour and cursor sequences are stripped: the output pane is plain text.
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;

// The editor's code and language survive a reload (and a closed tab) in this browser.
const SAVED = "sse-apps.exec.editor";
try {
  const saved = JSON.parse(localStorage.getItem(SAVED));
  if (saved && typeof saved.code === "string") {
    $("#code").value = saved.code;
    if ([...$("#language").options].some((o) => o.value === saved.language)) $("#language").value = saved.language;
    $("#terminal").checked = saved.terminal === true;
  }
} catch { /* nothing saved, or storage refused: the default code stays */ }
function saveEditor() {
  const editor = { code: $("#code").value, language: $("#language").value, terminal: $("#terminal").checked };
  try { localStorage.setItem(SAVED, JSON.stringify(editor)); } catch { /* storage refused */ }
}
for (const input of ["#code", "#language", "#terminal"]) $(input).addEventListener("input", saveEditor);

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
  if ($("#terminal").checked) {
    // The run starts at the size the terminal has on this page.
    showView(true);
    const { rows, cols } = terminal();
    Object.assign(body, { pty: true, rows, cols });
  }
  const response = await post("/exec/runs", body);
  if (!response.ok) { $("#run-error").textContent = await errorText(response); return; }
  const { id } = await response.json();
  if (body.pty) terminalRuns.add(id);
  location.hash = `run=${id}`; // hashchange attaches
  loadRuns();
});

// ---- the terminal ----
let xterm = null, fit = null, lastInput = -Infinity;

// The page's one xterm, made on first use and fitted to its pane.
function terminal() {
  if (!xterm) {
    xterm = new Terminal({ cursorBlink: true, scrollback: 5000, fontFamily: "ui-monospace, Menlo, monospace", fontSize: 14 });
    fit = new FitAddon.FitAddon();
    xterm.loadAddon(fit);
    xterm.open($("#terminal-view"));
    // Only what this page's person typed or pasted goes to the run. xterm also answers a
    // program's queries (where is the cursor, what terminal is this) through onData, and it
    // would answer every query again when a reload replays the output, and once per open page:
    // input nobody typed. Answers that follow a key or a paste within a second (an editor
    // started by Enter asking at once) still go.
    const typed = () => { lastInput = performance.now(); };
    // On the pane, in the capture phase: before xterm's own handlers, which stop the events.
    for (const event of ["keydown", "paste", "mousedown"]) $("#terminal-view").addEventListener(event, typed, true);
    xterm.onData((data) => {
      if (current && current.terminal && performance.now() - lastInput < 1000) keys.send(current.id, data);
    });
    xterm.onResize(({ rows, cols }) => {
      if (current && current.terminal) post(`/exec/runs/${current.id}/resize`, { rows, cols });
    });
    window.execTerminal = xterm; // for the console, and the browser tests
  }
  fit.fit();
  return xterm;
}
window.addEventListener("resize", () => { if (current && current.terminal) fit.fit(); });

// Keys go to stdin in the order typed: one POST at a time, and what is typed meanwhile goes in
// the next one (so a fast typist costs fewer requests, and nothing overtakes anything).
// Keys are kept with the run they were typed into, so none reaches another run shown meanwhile.
const keys = {
  run: null,
  pending: "",
  busy: false,
  send(run, data) {
    if (run !== this.run) { this.run = run; this.pending = ""; }
    this.pending += data;
    if (!this.busy) this.flush();
  },
  async flush() {
    this.busy = true;
    while (this.pending) {
      const [run, data] = [this.run, this.pending];
      this.pending = "";
      const response = await post(`/exec/runs/${run}/stdin`, { data });
      // Once the run has ended its "Ended: …" line stays: keys typed after it are refused, rightly.
      const ended = Boolean($("#exit").dataset.reason);
      if (!response.ok && current && current.id === run && !ended) $("#exit").textContent = await errorText(response);
    }
    this.busy = false;
  },
};

// The terminal or the text view (with its line input) for the run shown.
function showView(inTerminal) {
  $("#run-view").hidden = false;
  $("#terminal-view").hidden = !inTerminal;
  $("#output").hidden = inTerminal;
  for (const plainOnly of ["#stdin", "#send", "#eof"]) $(plainOnly).hidden = inTerminal;
}

// Whether run `id` has a terminal: known if this page started it, else the server says.
async function hasTerminal(id) {
  if (terminalRuns.has(id)) return true;
  const response = await fetch("/exec/runs");
  if (!response.ok) return false;
  const { runs } = await response.json();
  return runs.some((run) => run.id === id && run.terminal === true);
}

function setStatus(state, text) {
  const status = $("#run-status");
  status.dataset.state = state; status.textContent = text;
}

async function attach(id, fromId = 0) {
  if (source) source.close();
  if (!current || current.id !== id) {
    current = { id, lastId: 0, terminal: await hasTerminal(id) };
    $("#output").textContent = "";
    $("#exit").textContent = "";
    $("#exit").dataset.reason = "";
    showView(current.terminal);
    if (current.terminal) {
      terminal().reset();
      xterm.focus();
      // The server's terminal may have another size (this page reloaded, or another opened it).
      post(`/exec/runs/${id}/resize`, { rows: xterm.rows, cols: xterm.cols });
    }
  }
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
    if (current.terminal) { xterm.write(JSON.parse(e.data).text); return; }
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
    if (current.terminal) { xterm.write(`\r\n[${JSON.parse(e.data).message}]\r\n`); return; }
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
