// The chat page: history by fetch, live events by one EventSource per room, posts by fetch.
// Every user-supplied string goes in with textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const api = (room, path = "") => `/chat/rooms/${encodeURIComponent(room)}${path}`;

const state = {
  room: null,
  nick: null,
  token: null,
  source: null,
  rendered: new Set(), // message ids already on screen
  online: new Set(),
  oldestId: null,
  newestId: 0,
  lastTypingSent: 0,
  typingTimer: null,
};

// Members and unsent messages survive a reload (per tab: two tabs can be two members).
const saved = {
  member: (room) => JSON.parse(sessionStorage.getItem(`chat.member.${room}`) || "null"),
  setMember: (room, member) => sessionStorage.setItem(`chat.member.${room}`, JSON.stringify(member)),
  pending: (room) => JSON.parse(sessionStorage.getItem(`chat.pending.${room}`) || "[]"),
  setPending: (room, list) => sessionStorage.setItem(`chat.pending.${room}`, JSON.stringify(list)),
};

function newMessageId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

async function refreshRooms() {
  const response = await fetch("/chat/rooms");
  if (!response.ok) return;
  const { rooms } = await response.json();
  const list = $("rooms");
  list.replaceChildren(
    ...rooms.map(({ name, online }) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "#";
      link.textContent = name;
      link.addEventListener("click", (event) => {
        event.preventDefault();
        $("room-name").value = name;
        $("nick").focus();
      });
      item.append(link, document.createTextNode(` (${online} online)`));
      return item;
    }),
  );
}

function renderMessage(message, { prepend = false } = {}) {
  if (state.rendered.has(message.id)) return;
  state.rendered.add(message.id);
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const nick = document.createElement("span");
  nick.className = "nick";
  nick.textContent = message.nick;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date(message.ts).toLocaleTimeString();
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.append(nick, time, text);
  const list = $("messages");
  // Keep the list in id order whatever the arrival order.
  const after = [...list.children].find((li) => Number(li.dataset.id) > message.id);
  list.insertBefore(item, prepend ? list.firstChild : after || null);
  if (state.oldestId === null || message.id < state.oldestId) state.oldestId = message.id;
  if (message.id > state.newestId) state.newestId = message.id;
  if (!prepend) list.scrollTop = list.scrollHeight;
}

function setStatus(kind, text) {
  $("conn-status").dataset.state = kind;
  $("conn-status").textContent = text;
}

async function loadLatest() {
  const response = await fetch(`${api(state.room, "/messages")}?limit=50`);
  if (!response.ok) return;
  const { messages } = await response.json();
  messages.forEach((message) => renderMessage(message));
}

async function loadEarlier() {
  if (state.oldestId === null) return;
  const response = await fetch(`${api(state.room, "/messages")}?before=${state.oldestId}&limit=50`);
  if (!response.ok) return;
  const { messages } = await response.json();
  messages.reverse().forEach((message) => renderMessage(message, { prepend: true }));
  if (messages.length === 0) $("load-earlier").disabled = true;
}

function showOnline(online) {
  $("online").replaceChildren(
    ...online.map((nick) => {
      const item = document.createElement("li");
      item.textContent = nick === state.nick ? `${nick} (you)` : nick;
      return item;
    }),
  );
}

function showTyping(nick) {
  if (nick === state.nick) return;
  $("typing").textContent = `${nick} is typing…`;
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => ($("typing").textContent = ""), 3000);
}

function openStream() {
  const query = new URLSearchParams({ token: state.token });
  // A new EventSource cannot send Last-Event-ID itself: pass where the history left off.
  if (state.newestId) query.set("lastEventId", String(state.newestId));
  const source = new EventSource(`${api(state.room, "/events")}?${query}`);
  state.source = source;
  setStatus("connecting", "connecting…");
  source.onopen = () => {
    setStatus("open", "connected");
    sendPending();
  };
  source.addEventListener("message", (event) => renderMessage(JSON.parse(event.data)));
  source.addEventListener("presence", (event) => {
    // A snapshot ({online}) first, then changes ({joined} or {left}).
    const presence = JSON.parse(event.data);
    if (presence.online) state.online = new Set(presence.online);
    if (presence.joined) state.online.add(presence.joined);
    if (presence.left) state.online.delete(presence.left);
    showOnline([...state.online].sort());
  });
  source.addEventListener("typing", (event) => showTyping(JSON.parse(event.data).nick));
  // We missed messages: start over from the newest page, so the list has no hidden hole.
  source.addEventListener("resync", () => {
    state.rendered.clear();
    state.oldestId = null;
    $("messages").replaceChildren();
    $("load-earlier").disabled = false;
    loadLatest();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (our token is no longer valid, say): join again.
      setStatus("closed", "disconnected");
      source.close();
      if (state.source === source) setTimeout(() => enterRoom(state.room, state.nick), 2000);
    } else {
      setStatus("connecting", "reconnecting…");
    }
  };
}

async function enterRoom(room, nick) {
  $("join-error").textContent = "";
  const member = saved.member(room);
  const headers = { "Content-Type": "application/json" };
  if (member && member.nick === nick) headers.Authorization = `Bearer ${member.token}`;
  let response;
  try {
    response = await fetch(api(room, "/join"), { method: "POST", headers, body: JSON.stringify({ nick }) });
  } catch {
    $("join-error").textContent = "the server cannot be reached";
    return;
  }
  const body = await response.json();
  if (!response.ok) {
    $("join-error").textContent = body.error ? body.error.message : `failed (${response.status})`;
    return;
  }
  if (state.source) state.source.close();
  Object.assign(state, { room, nick: body.nick, token: body.token, source: null, oldestId: null, newestId: 0 });
  state.rendered.clear();
  saved.setMember(room, { nick: body.nick, token: body.token });
  sessionStorage.setItem("chat.last", JSON.stringify({ room, nick: body.nick }));
  $("room-view").hidden = false;
  $("room-title").textContent = `#${room} as ${body.nick}`;
  $("messages").replaceChildren();
  $("load-earlier").disabled = false;
  await loadLatest();
  openStream();
  refreshRooms();
}

// Sending: every message gets an id first and waits in a queue (kept across reloads) until the
// server has it. One sender works through the queue in order; a retry with the same id can never
// store a message twice, so anything that might be temporary is retried: network errors, 5xx,
// 429 (after its Retry-After). Only a refusal that will not change (a 4xx) drops the message.
let sending = false;
let retryDelay = 1000;

async function sendPending() {
  if (sending || !state.room) return;
  sending = true;
  try {
    const room = state.room;
    for (;;) {
      const [message] = saved.pending(room);
      if (!message || room !== state.room) return;
      const outcome = await post(room, message);
      if (outcome === "retry") {
        setTimeout(sendPending, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
        return;
      }
      if (outcome === "wait") return; // a countdown calls us again
      retryDelay = 1000;
      saved.setPending(room, saved.pending(room).filter((m) => m.client_msg_id !== message.client_msg_id));
    }
  } finally {
    sending = false;
  }
}

async function post(room, message) {
  let response;
  try {
    response = await fetch(api(room, "/messages"), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
      body: JSON.stringify(message),
    });
  } catch {
    $("post-status").textContent = "not sent yet: the server cannot be reached, retrying";
    return "retry";
  }
  if (response.status === 429) {
    countdown(Number(response.headers.get("Retry-After") || "1"), () => sendPending());
    return "wait";
  }
  if (response.status >= 500) {
    $("post-status").textContent = `not sent yet (${response.status}), retrying`;
    return "retry";
  }
  const body = await response.json();
  if (response.ok) {
    renderMessage(body);
    $("post-status").textContent = "";
  } else {
    $("post-status").textContent = body.error ? `not sent: ${body.error.message}` : `not sent (${response.status})`;
  }
  return "done";
}

function countdown(seconds, then) {
  const tick = () => {
    if (seconds <= 0) {
      $("post-status").textContent = "";
      then();
      return;
    }
    $("post-status").textContent = `slow down: sending again in ${seconds} s`;
    seconds -= 1;
    setTimeout(tick, 1000);
  };
  tick();
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  enterRoom($("room-name").value.trim(), $("nick").value.trim());
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.room) return;
  const message = { client_msg_id: newMessageId(), text };
  saved.setPending(state.room, [...saved.pending(state.room), message]);
  $("text").value = "";
  sendPending();
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("text").addEventListener("input", () => {
  const now = Date.now();
  if (!state.room || now - state.lastTypingSent < 2000) return;
  state.lastTypingSent = now;
  fetch(api(state.room, "/typing"), { method: "POST", headers: { Authorization: `Bearer ${state.token}` } }).catch(() => {});
});

$("load-earlier").addEventListener("click", loadEarlier);

refreshRooms();
setInterval(refreshRooms, 10000); // member counts change while the page is open
const last = JSON.parse(sessionStorage.getItem("chat.last") || "null");
if (last) {
  $("room-name").value = last.room;
  $("nick").value = last.nick;
  enterRoom(last.room, last.nick);
}
