// The agent's console: the customer's live picture, drawing tools, snapshots, ending with an outcome.
import { Annotator, TOOLS } from "./annotate.js";
import { ClientMessage, ErrorCode, ServerMessage } from "./protocol.js";
import { ServerPeer } from "./peer.js";
import { Signalling } from "./signalling.js";

const $ = (id) => document.getElementById(id);
const token = document.body.dataset.token;
const video = $("remote-video");
const annotator = new Annotator($("annotation-canvas"), video);
const signalling = new Signalling(token);
const snapshotIds = new Set();
let media = { state: "none" };
let peerState = "new";
let ended = false;
const pending = new Map(); // request_id -> started at (ms)

// Connection state, in words an agent reads at a glance.
function renderState() {
  const el = $("connection-state");
  let text;
  let tone = "info";
  if (ended) {
    text = "Session ended";
  } else if (!signalling.open) {
    text = "Reconnecting to the server…";
    tone = "warn";
  } else if (media.state === "live" && peerState === "connected") {
    text = `Live · ${media.width}×${media.height}`;
    tone = "ok";
  } else if (media.state === "live") {
    text = "Customer is live · connecting video…";
  } else {
    text = customerConnected ? "Customer joined · waiting for camera…" : "Waiting for the customer to join";
  }
  el.textContent = text;
  el.dataset.tone = tone;
  $("snapshot").disabled = ended || media.state !== "live";
}

let customerConnected = false;

const peer = new ServerPeer(signalling, (pc) => pc.addTransceiver("video", { direction: "recvonly" }));
peer.addEventListener("track", ({ detail }) => {
  video.srcObject = detail.streams[0] ?? new MediaStream([detail.track]);
  video.play().catch(() => {});
});
peer.addEventListener("state", ({ detail }) => {
  peerState = detail;
  renderState();
});

signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
  renderPresence(detail.participants);
  peer.start(detail.ice_servers);
  renderState();
});
signalling.addEventListener(ServerMessage.ANSWER, ({ detail }) => peer.accept(detail.sdp));
signalling.addEventListener(ServerMessage.PRESENCE, ({ detail }) => renderPresence(detail.participants));
signalling.addEventListener(ServerMessage.MEDIA, ({ detail }) => {
  media = detail;
  renderState();
});
signalling.addEventListener(ServerMessage.SNAPSHOT_STORED, ({ detail }) => {
  addSnapshot(detail.snapshot);
  if (detail.request_id && pending.has(detail.request_id)) {
    const ms = performance.now() - pending.get(detail.request_id);
    pending.delete(detail.request_id);
    notify(`Snapshot saved (${Math.round(ms)} ms)`);
  }
});
signalling.addEventListener(ServerMessage.ENDED, ({ detail }) => {
  ended = true;
  peer.close();
  $("end-form").hidden = true;
  $("ended-banner").hidden = false;
  $("ended-banner").textContent = detail.status === "expired" ? "The session expired." : `Session ended: ${detail.outcome?.replace("_", " ")}.`;
  renderState();
});
signalling.addEventListener(ServerMessage.ERROR, ({ detail }) => {
  if (detail.code === ErrorCode.SESSION_ENDED || detail.code === ErrorCode.SESSION_EXPIRED) {
    ended = true;
    renderState();
  }
  if (pending.has(detail.ref)) pending.delete(detail.ref);
  notify(detail.message, "error");
});
signalling.addEventListener("reconnecting", () => {
  peer.close();
  renderState();
});

function renderPresence(participants) {
  const list = $("participants");
  list.replaceChildren(
    ...participants.map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.name} (${p.role})`;
      li.dataset.connected = String(p.connected);
      return li;
    }),
  );
  customerConnected = participants.some((p) => p.role === "customer" && p.connected);
  renderState();
}

function addSnapshot(snapshot) {
  if (snapshotIds.has(snapshot.id)) return;
  snapshotIds.add(snapshot.id);
  const base = `/a/${token}/snapshots/${snapshot.id}`;
  const li = document.createElement("li");
  li.dataset.snapshotId = snapshot.id;
  const link = document.createElement("a");
  link.href = `${base}/annotated.png`;
  link.target = "_blank";
  link.rel = "noopener";
  const img = document.createElement("img");
  img.src = `${base}/annotated.png`;
  img.alt = `Snapshot taken ${new Date(snapshot.taken_at).toLocaleTimeString()}, ${snapshot.width}×${snapshot.height}`;
  img.loading = "lazy";
  link.append(img);
  const caption = document.createElement("span");
  caption.textContent = `${new Date(snapshot.taken_at).toLocaleTimeString()} · ${snapshot.width}×${snapshot.height}`;
  const raw = document.createElement("a");
  raw.href = `${base}/raw.png`;
  raw.target = "_blank";
  raw.rel = "noopener";
  raw.textContent = "original";
  li.append(link, caption, raw);
  $("snapshot-list").prepend(li);
  $("snapshot-count").textContent = String(snapshotIds.size);
}

function takeSnapshot() {
  if ($("snapshot").disabled) return;
  const requestId = crypto.randomUUID?.() ?? String(Math.random()).slice(2);
  pending.set(requestId, performance.now());
  signalling.send({ type: ClientMessage.SNAPSHOT, request_id: requestId, annotations: annotator.toJSON() });
}

let noticeTimer = null;
function notify(text, tone = "info") {
  const el = $("notice");
  el.textContent = text;
  el.dataset.tone = tone;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.textContent = ""), 6000);
}

function selectTool(tool) {
  annotator.tool = tool;
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
  }
}

for (const button of document.querySelectorAll("[data-tool]")) {
  button.addEventListener("click", () => selectTool(button.dataset.tool));
}
for (const swatch of document.querySelectorAll("[data-color]")) {
  swatch.addEventListener("click", () => {
    annotator.color = swatch.dataset.color;
    for (const s of document.querySelectorAll("[data-color]")) s.setAttribute("aria-pressed", String(s === swatch));
  });
}
$("undo").addEventListener("click", () => annotator.undo());
$("clear").addEventListener("click", () => annotator.clear());
$("snapshot").addEventListener("click", takeSnapshot);

$("outcome").addEventListener("change", () => ($("end-session").disabled = !$("outcome").value));
$("end-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const outcome = $("outcome").value;
  if (!outcome) return;
  signalling.send({ type: ClientMessage.END, outcome, notes: $("notes").value });
});

// Keyboard: tool letters, Ctrl/Cmd+Z undo, S snapshot; never while typing in a field.
const KEYS = { a: "arrow", r: "rect", o: "ellipse", f: "freehand", t: "text" };
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select")) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    annotator.undo();
  } else if (!event.ctrlKey && !event.metaKey && !event.altKey) {
    const key = event.key.toLowerCase();
    if (KEYS[key]) selectTool(KEYS[key]);
    else if (key === "s") takeSnapshot();
  }
});

for (const tool of TOOLS) if (!document.querySelector(`[data-tool="${tool}"]`)) console.warn(`no button for ${tool}`);
for (const li of $("snapshot-list").children) snapshotIds.add(li.dataset.snapshotId);
selectTool("arrow");
renderState();
signalling.connect();
