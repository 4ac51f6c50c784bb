// The dashboard page: one EventSource for everything, charts drawn on canvas by hand, and
// control actions sent by POST after a confirmation step.
//
// State comes only from the server: `snapshot` replaces it (on every connect, so a reconnect
// can never leave stale charts), then each event updates it. A `resync` (this page fell behind)
// reconnects for a fresh snapshot.
"use strict";

const $ = (selector) => document.querySelector(selector);

// ---- which machine ----
// With several instances sharing a Redis, each measures its own machine; the picker chooses one
// and every request names it (`?instance=`), whichever instance the load balancer picks.
let instance = new URLSearchParams(location.search).get("instance") || "";
const withInstance = (path) => instance
  ? `${path}${path.includes("?") ? "&" : "?"}instance=${encodeURIComponent(instance)}` : path;
async function loadInstances() {
  const response = await fetch("/dashboard/instances");
  if (!response.ok) return;
  const { this: own, instances } = await response.json();
  if (instances.length < 2) return;
  if (!instance) instance = own;
  const options = instances.map((i) => {
    const option = document.createElement("option");
    option.value = i.instance; option.textContent = `${i.instance} (${i.address})`;
    return option;
  });
  $("#instance").replaceChildren(...options);
  $("#instance").value = instance;
  $("#instance-pick").hidden = false;
}
const state = {
  history: [], historyMs: 600000, intervalMs: 1000, latest: null,
  alerts: new Map(), commands: new Map(), sort: { key: "cpu", descending: true }, serverPid: null,
};

// ---- formatting: a missing value says so, it is never shown as zero ----
const NA = '<span class="na">n/a</span>';
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (v) => (v == null ? NA : `${v.toFixed(1)}%`);
function bytes(v) {
  if (v == null) return NA;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
// Axis labels must fit the 50 px margin: "336M", "1.5K".
function axisBytes(v) {
  const units = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)}${units[i]}`;
}
// A round top for a bytes axis: four equal steps of 1, 2 or 5 × a power of ten in the unit the
// top is shown in, so no two of its labels read the same (never "1B 1B 1B 0B").
function bytesAxisTop(v) {
  let unit = 1;
  while (v / unit >= 1024) unit *= 1024;
  const quarter = v / unit / 4, power = 10 ** Math.floor(Math.log10(quarter));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= quarter);
  return Math.max(4 * step * unit, 4);
}
const rate = (v) => (v == null ? NA : `${bytes(v)}/s`);
const time = (ms) => new Date(ms).toLocaleTimeString();
function uptime(s) {
  if (s == null) return NA;
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return `${d ? `${d}d ` : ""}${h}h ${m}m`;
}

// ---- charts ----
// Each chart plots some series of the history's points against time (the last 10 minutes).
// A null value or a gap longer than three intervals (nobody watched, so nothing was sampled)
// breaks the line rather than bridging it.
const CHARTS = {
  cpu: { percent: true, series: [["cpu", (p) => p.cpu, "--accent"]], cores: true },
  memory: { percent: true, series: [["memory", (p) => p.memory, "--accent"], ["swap", (p) => p.swap, "--warn"]] },
  load: { series: [["1 min", (p) => p.load && p.load[0], "--accent"], ["5 min", (p) => p.load && p.load[1], "--warn"], ["15 min", (p) => p.load && p.load[2], "--muted"]] },
  network: { bytes: true, series: [["received", (p) => p.net_rx, "--accent"], ["sent", (p) => p.net_tx, "--warn"]] },
  disk: { bytes: true, series: [["read", (p) => p.disk_read, "--accent"], ["written", (p) => p.disk_write, "--warn"]] },
};
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function drawChart(canvas) {
  const chart = CHARTS[canvas.dataset.chart];
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const pad = { left: 52, right: 8, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  // The time axis spans the history there is (at least ten ticks), up to the full ten minutes,
  // so a fresh dashboard's charts fill the width rather than sitting in one corner.
  const now = state.history.length ? state.history[state.history.length - 1].t : Date.now();
  const first = state.history.length ? state.history[0].t : now;
  const span = Math.min(state.historyMs, Math.max(now - first, 10 * state.intervalMs));
  const start = now - span;
  let max = chart.percent ? 100 : 0;
  if (!chart.percent) {
    for (const p of state.history) for (const [, get] of chart.series) max = Math.max(max, get(p) ?? 0);
    max = max > 0 ? max * 1.15 : 1;
    if (chart.bytes) max = bytesAxisTop(max);
  }
  const x = (t) => pad.left + ((t - start) / span) * plotW;
  const y = (v) => pad.top + plotH - (Math.min(v, max) / max) * plotH;

  g.strokeStyle = css("--line"); g.fillStyle = css("--muted"); g.lineWidth = 1;
  g.font = "11px system-ui, sans-serif"; g.textAlign = "right"; g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = y(v);
    g.beginPath(); g.moveTo(pad.left, yy); g.lineTo(width - pad.right, yy); g.stroke();
    g.fillText(chart.percent ? `${v.toFixed(0)}%` : chart.bytes ? axisBytes(v) : v.toFixed(2), pad.left - 4, yy);
  }
  g.textAlign = "left"; g.textBaseline = "top";
  g.fillText(span >= 60000 ? `−${Math.round(span / 60000)} min` : `−${Math.round(span / 1000)} s`, pad.left, height - 14);
  g.textAlign = "right"; g.fillText("now", width - pad.right, height - 14);

  const line = (get, color, width) => {
    g.strokeStyle = color; g.lineWidth = width; g.beginPath();
    let drawing = false, lastT = 0;
    for (const p of state.history) {
      const v = get(p);
      if (v == null || p.t < start || p.t - lastT > 3 * state.intervalMs) drawing = false;
      if (v != null && p.t >= start) {
        if (drawing) g.lineTo(x(p.t), y(v)); else g.moveTo(x(p.t), y(v));
        drawing = true;
      }
      lastT = p.t;
    }
    g.stroke();
  };
  if (chart.cores) {
    const cores = state.history.reduce((n, p) => Math.max(n, p.cores ? p.cores.length : 0), 0);
    g.globalAlpha = 0.25;
    for (let i = 0; i < cores; i++) line((p) => p.cores && p.cores[i], css("--muted"), 1);
    g.globalAlpha = 1;
  }
  for (const [, get, color] of chart.series) line(get, css(color), 2);
  // legend
  let lx = pad.left + 6;
  g.textAlign = "left"; g.textBaseline = "top";
  for (const [label, , color] of chart.series) {
    g.fillStyle = css(color); g.fillRect(lx, pad.top + 2, 10, 3);
    g.fillStyle = css("--fg"); g.fillText(label, lx + 14, pad.top - 3);
    lx += 22 + g.measureText(label).width;
  }
  canvas.dataset.points = String(state.history.length);
}
const drawCharts = () => document.querySelectorAll("canvas[data-chart]").forEach(drawChart);
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawCharts);
window.addEventListener("resize", drawCharts);

// ---- the latest tick ----
function note(id, ...fields) {
  const why = fields.map((f) => state.latest && state.latest.detail.unavailable[f]).find(Boolean);
  $(id).textContent = why ? `(${why})` : "";
}

function renderLatest() {
  const s = state.latest;
  if (!s) return;
  const { point: p, detail: d } = s;
  $("#summary").textContent = `Updated ${time(p.t)} · every ${state.intervalMs} ms · ${d.cpu_limit.cores.toFixed(2).replace(/\.00$/, "")} CPUs (${d.cpu_limit.source})`;
  note("#cpu-note", "cpu"); note("#memory-note", "swap"); note("#load-note", "load");
  note("#network-note", "net_rx"); note("#disk-note", "disk_read");
  const facts = [
    ["CPU", pct(p.cpu)], ["Memory", `${pct(p.memory)} · ${bytes(d.memory.used)} of ${bytes(d.memory.total)} (${d.memory.source})`],
    ["Swap", d.swap ? `${pct(p.swap)} · ${bytes(d.swap.used)} of ${bytes(d.swap.total)}` : `${NA} (${esc(d.unavailable.swap || "")})`],
    ["Load", p.load ? p.load.map((v) => v.toFixed(2)).join(" · ") : NA], ["Uptime", uptime(d.uptime_s)],
  ];
  $("#now").innerHTML = facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  $("#disks tbody").innerHTML = d.disks.map((k) => {
    const used = k.total ? (100 * (k.total - k.available)) / k.total : null;
    return `<tr><td>${esc(k.mount)} <span class="small">${esc(k.name)}</span></td><td>${pct(used)} of ${bytes(k.total)}</td><td>${rate(k.read_bps)}</td><td>${rate(k.write_bps)}</td></tr>`;
  }).join("");
  $("#networks tbody").innerHTML = d.networks.map((n) => `<tr><td>${esc(n.name)}</td><td>${rate(n.rx_bps)}</td><td>${rate(n.tx_bps)}</td></tr>`).join("");
  $("#temperatures").innerHTML = d.temperatures.length
    ? d.temperatures.map((t) => `<li>${esc(t.label)}: ${t.celsius.toFixed(1)} °C</li>`).join("")
    : `<li class="na">${esc(d.unavailable.temperatures || "none")}</li>`;
}

// ---- the process list ----
// Every process, searched, sorted and paged by the server (`GET /dashboard/processes`): the
// stream carries only the top ones. The page asks again on each change and every 2 s while shown.
const PAGE = 50;
const list = { offset: 0, matched: 0, timer: null, asked: 0 };

async function loadProcesses() {
  const asked = ++list.asked;
  const { key, descending } = state.sort;
  const query = new URLSearchParams({
    q: $("#process-search").value, mine: $("#process-mine").checked, sort: key,
    order: descending ? "desc" : "asc", offset: list.offset, limit: PAGE,
  });
  const response = await fetch(withInstance(`/dashboard/processes?${query}`));
  if (asked !== list.asked) return; // a newer question was asked meanwhile
  if (!response.ok) { $("#process-count").textContent = await errorText(response); return; }
  const { processes, matched, total, offset } = await response.json();
  list.matched = matched;
  renderProcesses(processes);
  $("#process-count").textContent = matched === 0 ? `none of ${total}`
    : `${offset + 1}–${offset + processes.length} of ${matched}${matched < total ? ` (${total} in all)` : ""}`;
  $("#process-prev").disabled = offset === 0;
  $("#process-next").disabled = offset + PAGE >= matched;
}

function renderProcesses(rows) {
  // pid 1 and the server itself are refused by the server; the page says so up front, as it does
  // for a process the server may not act on.
  const actions = (p) => p.pid === 1 || p.pid === state.serverPid ? `<span class="small">protected</span>`
    : !p.actionable ? `<span class="small" title="not started by this server or from its session, or another user's (see --allow-control-all)">not yours</span>`
    : `<button type="button" class="terminate" data-pid="${p.pid}" data-name="${esc(p.name)}">Terminate</button>
        <button type="button" class="renice" data-pid="${p.pid}" data-name="${esc(p.name)}">Renice</button>`;
  $("#processes tbody").innerHTML = rows.map((p) => `<tr data-pid="${p.pid}">
    <td>${p.pid}</td><td>${esc(p.name)}</td><td>${p.user == null ? NA : esc(p.user)}</td>
    <td>${p.cpu == null ? NA : p.cpu.toFixed(1)}</td><td>${bytes(p.memory)}</td>
    <td>${actions(p)}</td></tr>`).join("");
}

function reloadProcesses(fromStart) {
  if (fromStart) list.offset = 0;
  clearTimeout(list.timer);
  list.timer = setTimeout(refreshProcesses, 150); // one request once typing pauses
}
function refreshProcesses() {
  clearTimeout(list.timer);
  // A hidden tab asks nothing; it catches up when shown again.
  if (document.hidden) { list.timer = setTimeout(refreshProcesses, 2000); return; }
  loadProcesses().finally(() => { list.timer = setTimeout(refreshProcesses, 2000); });
}
$("#process-search").addEventListener("input", () => reloadProcesses(true));
$("#process-mine").addEventListener("change", () => reloadProcesses(true));
$("#process-prev").addEventListener("click", () => { list.offset = Math.max(0, list.offset - PAGE); reloadProcesses(false); });
$("#process-next").addEventListener("click", () => { list.offset += PAGE; reloadProcesses(false); });
document.querySelectorAll("button.sort").forEach((button) => button.addEventListener("click", () => {
  const key = button.dataset.key;
  state.sort = { key, descending: state.sort.key === key ? !state.sort.descending : key !== "name" && key !== "user" };
  reloadProcesses(true);
}));

// ---- alerts ----
function renderAlerts() {
  const alerts = [...state.alerts.values()].sort((a, b) => b.changed_at - a.changed_at).slice(0, 30);
  $("#no-alerts").hidden = alerts.length > 0;
  $("#alerts").innerHTML = alerts.map((a) => `<li data-alert-id="${a.id}" data-level="${a.level}" data-state="${a.state}">
    <span class="level">${a.state === "cleared" ? `cleared (peak ${a.peak})` : a.level}</span>
    <span>${esc(a.metric)} at ${a.value.toFixed(1)}% (threshold ${a.threshold}%) · since ${time(a.raised_at)}</span>
    ${a.ack ? `<span class="small ack-by" title="${esc(a.ack.by)}">acknowledged by ${esc(shortWho(a.ack.by))} at ${time(a.ack.at)}</span>`
            : `<button type="button" class="ack" data-id="${a.id}">Acknowledge</button>`}</li>`).join("");
}

$("#alerts").addEventListener("click", async (e) => {
  const button = e.target.closest("button.ack");
  if (!button) return;
  button.disabled = true;
  const response = await fetch(withInstance(`/dashboard/alerts/${button.dataset.id}/ack`), { method: "POST" });
  if (!response.ok) {
    button.disabled = false;
    const text = await errorText(response);
    showError(text); showNear("#alert-error", `Refused: ${text}`);
  } else showNear("#alert-error", "");
  // Success shows when `alert_ack` arrives, the same way every other viewer sees it.
});

// ---- commands ----
function renderCommands() {
  const commands = [...state.commands.values()].sort((a, b) => b.started_at - a.started_at);
  $("#commands").innerHTML = commands.map((c) => {
    const params = Object.entries(c.params).map(([k, v]) => `${k}=${v}`).join(" ");
    const outcome = c.state === "failed" ? `failed: ${esc(c.outcome.message)}`
      : c.state === "completed" ? `completed ${esc(JSON.stringify(c.outcome))}` : "running…";
    return `<li data-command-id="${c.id}" data-state="${c.state}"><strong>${esc(c.action)}</strong> ${esc(params)} · <span class="outcome">${outcome}</span></li>`;
  }).join("");
}

async function errorText(response) {
  try { const body = await response.json(); return `${response.status}: ${body.error.message}`; }
  catch { return `HTTP ${response.status}`; }
}
function showError(text) {
  const li = document.createElement("li");
  li.className = "error"; li.dataset.state = "refused"; li.textContent = text;
  $("#commands").prepend(li);
}

// A refused or failed action is also shown next to the control that asked for it (`place`),
// not only in the list of commands further down.
const placeOf = new Map(); // command id → where its failure is shown
function showNear(place, text) {
  $(place).textContent = text;
  $(place).hidden = !text;
}
async function sendCommand(body, place) {
  showNear(place, "");
  const response = await fetch(withInstance("/dashboard/commands"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    const text = await errorText(response);
    showError(text); showNear(place, `Refused: ${text}`);
    return;
  }
  const { id } = await response.json();
  placeOf.set(id, place);
}

// The confirmation step: nothing is sent until the dialog's Confirm is pressed.
function confirmThen(text, withNice, action) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#nice-field").hidden = !withNice;
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") action(); };
  dialog.showModal();
}

$("#processes").addEventListener("click", (e) => {
  const button = e.target.closest("button.terminate, button.renice");
  if (!button) return;
  const pid = Number(button.dataset.pid), name = button.dataset.name;
  if (button.classList.contains("terminate")) {
    confirmThen(`Terminate ${name} (pid ${pid})? It gets TERM, then KILL after 5 s.`, false,
      () => sendCommand({ action: "terminate", pid }, "#process-error"));
  } else {
    confirmThen(`Change the nice value of ${name} (pid ${pid})?`, true,
      () => sendCommand({ action: "renice", pid, nice: Number($("#nice").value) }, "#process-error"));
  }
});

$("#interval").addEventListener("change", (e) => {
  const interval_ms = Number(e.target.value);
  confirmThen(`Sample every ${interval_ms} ms for every viewer?`, false,
    () => sendCommand({ action: "set_interval", interval_ms }, "#interval-error"));
  e.target.value = String(state.intervalMs); // shows the new value once the server confirms
});

// ---- audit log ----
async function loadAudit() {
  const response = await fetch(withInstance("/dashboard/audit?limit=50"));
  if (!response.ok) return;
  const { entries } = await response.json();
  $("#audit tbody").innerHTML = entries.map((e) => `<tr data-outcome="${esc(e.outcome)}"><td>${time(e.at)}</td><td class="who" title="${esc(e.who)}">${esc(shortWho(e.who))}</td>
    <td>${esc(e.action)} ${esc(JSON.stringify(e.params))}</td><td>${esc(e.outcome)}${e.detail && e.detail.code ? ` (${esc(e.detail.code)})` : ""}</td></tr>`).join("");
}
$("#audit-refresh").addEventListener("click", loadAudit);

// "127.0.0.1 (Mozilla/5.0 (X11; Linux x86_64) … Chrome/131.0.0.0 Safari/537.36)" reads as
// "127.0.0.1 · Chrome 131"; the whole text is the cell's tooltip.
function shortWho(who) {
  const match = /^(\S+) \((.*)\)$/.exec(who);
  if (!match) return who;
  const [, address, agent] = match;
  const browsers = [[/Edg\/(\d+)/, "Edge"], [/OPR\/(\d+)/, "Opera"], [/Firefox\/(\d+)/, "Firefox"],
    [/(?:HeadlessChrome|Chromium|Chrome)\/(\d+)/, "Chrome"], [/Version\/(\d+)[^ ]* Safari/, "Safari"]];
  for (const [pattern, name] of browsers) {
    const version = pattern.exec(agent);
    if (version) return `${address} · ${name} ${version[1]}`;
  }
  // A tool names itself first: "curl/8.5.0", "python-httpx/0.27".
  return `${address} · ${agent.split(" ")[0].slice(0, 40)}`;
}

// ---- the stream ----
let source = null;
function connect() {
  const status = $("#conn-status");
  status.dataset.state = "connecting"; status.textContent = "connecting…";
  source = new EventSource(withInstance("/dashboard/events"));
  source.onopen = () => { status.dataset.state = "open"; status.textContent = "live"; };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a 401 without the token's cookie, say): the browser gives up, we retry.
      status.dataset.state = "closed"; status.textContent = "disconnected (open the link with the token); retrying…";
      setTimeout(connect, 5000);
    } else {
      status.dataset.state = "connecting"; status.textContent = "reconnecting…";
    }
  };
  const on = (name, handle) => source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  on("snapshot", (s) => {
    state.history = s.history; state.historyMs = s.history_s * 1000; state.intervalMs = s.interval_ms;
    state.latest = s.latest; state.serverPid = s.server_pid;
    state.alerts = new Map(s.alerts.map((a) => [a.id, a]));
    state.commands = new Map(s.commands.map((c) => [c.id, c]));
    $("#interval").value = String(s.interval_ms);
    renderLatest(); renderAlerts(); renderCommands(); drawCharts(); loadAudit(); refreshProcesses();
  });
  on("metrics", (sample) => {
    state.history.push(sample.point);
    while (state.history.length && state.history[0].t < sample.point.t - state.historyMs) state.history.shift();
    state.latest = sample;
    renderLatest(); drawCharts();
  });
  const alert = (a) => { state.alerts.set(a.id, a); renderAlerts(); };
  on("alert", alert); on("alert_ack", alert);
  const command = (c) => {
    state.commands.set(c.id, c); renderCommands();
    if (c.state === "failed" && placeOf.has(c.id)) showNear(placeOf.get(c.id), `Failed: ${c.action}${c.params.pid ? ` pid ${c.params.pid}` : ""}: ${c.outcome.message}`);
    if (c.action === "set_interval" && c.state === "completed") {
      state.intervalMs = c.outcome.interval_ms; $("#interval").value = String(state.intervalMs);
    }
    if (c.state !== "started") { loadAudit(); refreshProcesses(); }
  };
  on("command_started", command); on("command_completed", command); on("command_failed", command);
  on("resync", () => { source.close(); connect(); });
}
$("#instance").addEventListener("change", (e) => {
  instance = e.target.value;
  list.offset = 0;
  if (source) source.close();
  connect();
});
loadInstances().finally(connect);
