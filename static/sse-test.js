// The SSE test page: one EventSource, a numbered list of events, and a debug log that shows
// connects, drops, reconnects and the Last-Event-ID the browser sends when it comes back.
// Text goes in with textContent only, never innerHTML.
"use strict";

const eventsList = document.getElementById("events");
const logList = document.getElementById("log");
const statusBadge = document.getElementById("status");
const connectButton = document.getElementById("connect");
const disconnectButton = document.getElementById("disconnect");

let source = null;
let lastEventId = "";
let received = 0;

function now() {
  return new Date().toLocaleTimeString();
}

function log(text, kind = "info") {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  item.textContent = `${now()} ${text}`;
  logList.appendChild(item);
  logList.scrollTop = logList.scrollHeight;
}

function setStatus(state, text) {
  statusBadge.dataset.state = state;
  statusBadge.textContent = text;
  connectButton.disabled = state !== "closed";
  disconnectButton.disabled = state === "closed";
}

function showEvent(event) {
  received += 1;
  const item = document.createElement("li");
  item.dataset.id = event.lastEventId;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${now()} [id ${event.lastEventId || "-"}] `;
  item.append(meta, document.createTextNode(event.data));
  eventsList.appendChild(item);
  eventsList.scrollTop = eventsList.scrollHeight;
}

function connect() {
  if (source) return;
  setStatus("connecting", "connecting…");
  // Next to this page: /events for basic-server, /basic/events with all apps. A new EventSource
  // does not send Last-Event-ID by itself, so a manual reconnect passes it as a query parameter.
  const base = location.pathname.endsWith("/") ? location.pathname : `${location.pathname}/`;
  const query = lastEventId ? `?lastEventId=${encodeURIComponent(lastEventId)}` : "";
  const url = `${base}events${query}`;
  log(`connecting to ${url}`);
  source = new EventSource(url);
  source.onopen = () => {
    setStatus("open", "connected");
    log(lastEventId ? `connected (the browser sent Last-Event-ID: ${lastEventId})` : "connected");
  };
  source.onmessage = (event) => {
    lastEventId = event.lastEventId;
    showEvent(event);
  };
  source.addEventListener("resumed", (event) => {
    const { last_event_id } = JSON.parse(event.data);
    log(`server resumed after Last-Event-ID ${last_event_id}`, "resume");
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // The server answered 204 (nothing more) or something that is not a stream.
      log("the server closed the stream for good (no more events)");
      source.close();
      source = null;
      setStatus("closed", "finished");
      return;
    }
    // The stream ended (the server sent its last event, or stopped) or broke: the browser cannot
    // tell which, and reconnects either way; a server with nothing more then answers 204.
    setStatus("connecting", "reconnecting…");
    log(`stream ended; the browser reconnects with Last-Event-ID: ${lastEventId || "(none)"}`, "reconnect");
  };
}

function disconnect() {
  if (!source) return;
  source.close();
  source = null;
  setStatus("closed", "disconnected");
  log(`disconnected after ${received} events`);
}

connectButton.addEventListener("click", connect);
disconnectButton.addEventListener("click", disconnect);
document.getElementById("clear").addEventListener("click", () => {
  eventsList.replaceChildren();
  logList.replaceChildren();
  received = 0;
  lastEventId = "";
});
connect();
