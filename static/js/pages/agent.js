// The staff console (agent, Tier 3 expert, supervisor): the customer's live picture, drawing and
// pointing on it, snapshots and photos, camera and quality control, voice, chat, inviting an expert,
// handing over, and ending with an outcome.
import { Annotator, TOOLS } from "../components/annotator.js";
import { ChatPanel } from "../components/chat.js";
import { Labels } from "../components/labels.js";
import { ServerPeer, iceConfiguration } from "../lib/peer.js";
import { ClientMessage, ErrorCode, ServerMessage, Source } from "../lib/protocol.js";
import { Signalling } from "../lib/signalling.js";
import { Microphone, RemoteVoice } from "../components/voice.js";

const $ = (id) => document.getElementById(id);
const token = document.body.dataset.token;
const role = document.body.dataset.role;
const leads = role === "agent" || role === "expert";
const video = $("remote-video");
const annotator = new Annotator($("annotation-canvas"), video);
const signalling = new Signalling(token);
new Labels(signalling, { leads: role === "agent" || role === "expert" }); // eslint-disable-line no-new
const voice = new RemoteVoice($("remote-audio"));
const microphone = new Microphone(signalling);
const snapshotIds = new Set();
const media = { camera: { state: "none" }, screen: { state: "none" }, staff_screen: { state: "none" } };
const pending = new Map(); // request_id -> started at (ms)
let watching = Source.CAMERA;
let peerState = "new";
let ended = false;
let me = null;
let people = [];
let frozen = false;
let sharing = null; // MediaStream of this agent's shared screen
let editing = null; // the stored snapshot being annotated, or null for the live picture
let ice = { iceServers: [] };

// Frames the video actually presents: a picture that stopped says so, never "Live" over a still image.
// (Browsers without requestVideoFrameCallback rely on the server saying the source stalled.)
const PAUSED_AFTER_MS = { camera: 1500, screen: 4000 };
let lastFrameAt = 0;
let frameCallback = null;
function watchFrames() {
  if (!video.requestVideoFrameCallback) return;
  if (frameCallback !== null) video.cancelVideoFrameCallback(frameCallback);
  frameCallback = video.requestVideoFrameCallback(() => {
    frameCallback = null;
    const wasPaused = picturePaused();
    lastFrameAt = performance.now();
    if (wasPaused) renderState();
    watchFrames();
  });
}
function picturePaused() {
  const current = media[watching];
  if (current.state === "stalled") return true;
  if (!video.requestVideoFrameCallback || document.hidden) return false;
  return current.state === "live" && performance.now() - lastFrameAt > PAUSED_AFTER_MS[watching];
}
setInterval(() => {
  if (picturePaused() !== ($("connection-state").dataset.paused === "true")) renderState();
  if (frameCallback === null) watchFrames();
}, 250);

// Connection state, in words an agent reads at a glance.
function renderState() {
  const el = $("connection-state");
  const current = media[watching];
  const customerConnected = people.some((p) => p.role === "customer" && p.connected);
  let text;
  let tone = "info";
  const paused = !ended && signalling.open && peerState === "connected" && picturePaused();
  el.dataset.paused = String(paused);
  if (ended) text = "Session ended";
  else if (!signalling.open) [text, tone] = ["Reconnecting to the server…", "warn"];
  else if (peerState === "failed") [text, tone] = ["Reconnecting…", "warn"];
  else if (paused) [text, tone] = ["Picture paused: weak connection", "warn"];
  else if (current.state !== "none" && peerState === "connected") {
    [text, tone] = [`Live · ${watching === Source.SCREEN ? "screen" : "camera"} ${current.width}×${current.height}${frozen ? " · frozen" : ""}`, "ok"];
  } else if (current.state !== "none") text = "Customer is live · connecting video…";
  else if (customerConnected) text = watching === Source.SCREEN ? "Customer is not sharing a screen" : "Customer joined · waiting for camera…";
  else text = "Waiting for the customer to join";
  el.textContent = text;
  el.dataset.tone = tone;
  const live = !ended && current.state !== "none";
  $("snapshot").disabled = !live && !editing;
  $("freeze").disabled = !live;
  $("hd-photo").disabled = ended || !customerConnected || media.camera.state === "none";
  $("source-camera").disabled = media.camera.state === "none" && watching !== Source.CAMERA;
  $("source-screen").disabled = media.screen.state === "none" && watching !== Source.SCREEN;
}

function setupPeer(pc) {
  const named = new Map();
  pc.addTransceiver("video", { direction: "recvonly" });
  const track = sharing?.getVideoTracks()[0];
  if (track) named.set(pc.addTransceiver(track, { direction: "sendonly", streams: [sharing] }), Source.STAFF_SCREEN);
  microphone.addSection(pc, role === "supervisor" ? "recvonly" : "sendrecv");
  return named;
}

const peer = new ServerPeer(signalling, setupPeer);
peer.addEventListener("track", ({ detail }) => {
  if (detail.track.kind === "audio") {
    voice.setTrack(detail.track);
    return;
  }
  video.srcObject = new MediaStream([detail.track]);
  video.play().catch(() => {});
  lastFrameAt = performance.now(); // a new stream: give its first frame time to come
  watchFrames();
});
peer.addEventListener("state", ({ detail }) => {
  peerState = detail;
  renderState();
});

signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
  me = detail.participant.id;
  ice = iceConfiguration(detail);
  renderPresence(detail.participants);
  for (const snapshot of detail.snapshots) addSnapshot(snapshot);
  frozen = detail.frozen;
  renderFrozen();
  peer.start(ice);
  if (watching !== Source.CAMERA) signalling.send({ type: ClientMessage.WATCH, source: watching });
  if (detail.audio && !microphone.started && role !== "supervisor") setMic(true);
  else microphone.restate();
  renderState();
});
signalling.addEventListener(ServerMessage.ANSWER, ({ detail }) => peer.accept(detail.sdp, detail.id));
signalling.addEventListener(ServerMessage.PRESENCE, ({ detail }) => renderPresence(detail.participants));
signalling.addEventListener(ServerMessage.MEDIA, ({ detail }) => {
  const started = media[detail.source].state === "none" && detail.state !== "none";
  media[detail.source] = detail;
  if (detail.source === Source.SCREEN && started && watching !== Source.SCREEN) {
    notify("The customer is sharing their screen: choose Screen to watch it.");
  }
  if (detail.source === Source.SCREEN && detail.state === "none" && watching === Source.SCREEN) watch(Source.CAMERA);
  renderState();
});
signalling.addEventListener(ServerMessage.SNAPSHOT_STORED, ({ detail }) => {
  addSnapshot(detail.snapshot);
  if (detail.request_id && pending.has(detail.request_id)) {
    const ms = performance.now() - pending.get(detail.request_id);
    pending.delete(detail.request_id);
    notify(`Snapshot saved (${Math.round(ms)} ms)`);
  } else if (detail.snapshot.source === "device_photo") {
    notify("The customer's photo arrived: open it from the list to draw on it.");
  }
});
signalling.addEventListener(ServerMessage.ANNOTATIONS, ({ detail }) => {
  if (detail.shapes.length) annotator.others.set(detail.by, detail.shapes);
  else annotator.others.delete(detail.by);
  annotator.draw();
});
signalling.addEventListener(ServerMessage.FROZEN, ({ detail }) => {
  frozen = detail.frozen;
  renderFrozen();
  renderState();
});
signalling.addEventListener(ServerMessage.CAMERA_STATE, ({ detail }) => renderCamera(detail.state));
signalling.addEventListener(ServerMessage.QUALITY, ({ detail }) => renderQuality(detail));
signalling.addEventListener(ServerMessage.INVITED, ({ detail }) => {
  $("invite-link").value = detail.url;
  $("invite-result").hidden = false;
  $("invite-who").textContent = `Link for ${detail.participant.name} (${detail.participant.role}): send it to them.`;
});
signalling.addEventListener(ServerMessage.ENDED, ({ detail }) => {
  ended = true;
  peer.close();
  $("end-form").hidden = true;
  $("ended-banner").hidden = false;
  $("ended-banner").textContent = detail.status === "expired" ? "The session expired."
    : detail.status === "revoked" ? "The session was revoked: its links no longer work."
      : `Session ended: ${detail.outcome?.replace("_", " ")}.`;
  renderState();
});
signalling.addEventListener(ServerMessage.ERROR, ({ detail }) => {
  if (detail.code === ErrorCode.SIGN_IN_REQUIRED) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if ([ErrorCode.SESSION_ENDED, ErrorCode.SESSION_EXPIRED, ErrorCode.SESSION_REVOKED].includes(detail.code)) {
    ended = true;
    renderState();
  }
  if (detail.code === ErrorCode.MEDIA_FAILED && detail.ref === ClientMessage.OFFER) {
    peer.retry(); // the server lost our media connection: a fresh one, no need to tell the agent
    return;
  }
  if (pending.has(detail.ref)) pending.delete(detail.ref);
  notify(detail.message, "error");
});
signalling.addEventListener("reconnecting", () => {
  peer.close();
  renderState();
});

new ChatPanel(signalling, { log: $("chat-log"), form: $("chat-form"), input: $("chat-input") });

function renderPresence(participants) {
  people = participants;
  voice.update(participants, me);
  const list = $("participants");
  list.replaceChildren(...participants.map((p) => {
    const li = document.createElement("li");
    li.dataset.connected = String(p.connected);
    li.textContent = `${p.name} (${p.role})${p.lead ? " · leading" : ""}${p.connected && !p.muted ? " · 🎙" : ""}`;
    if (leads && p.id !== me && (p.role === "agent" || p.role === "expert") && p.connected && !p.lead) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Hand over";
      button.dataset.testid = "handover";
      button.addEventListener("click", () => signalling.send({ type: ClientMessage.HANDOVER, to: p.id }));
      li.append(" ", button);
    }
    return li;
  }));
  const lead = participants.find((p) => p.lead);
  $("lead-note").textContent = lead?.id === me ? "You are leading this session."
    : lead ? `${lead.name} is leading this session.` : "";
  $("leave-session").hidden = !(lead && lead.id !== me && role !== "supervisor");
  renderState();
}

// The server gives this page URLs under its own link (and a new annotated_url after each drawing).
function addSnapshot(snapshot) {
  const existing = $("snapshot-list").querySelector(`[data-snapshot-id="${snapshot.id}"]`);
  const li = existing ?? document.createElement("li");
  li.dataset.snapshotId = snapshot.id;
  li.dataset.source = snapshot.source;
  const link = document.createElement("a");
  link.href = snapshot.annotated_url;
  link.target = "_blank";
  link.rel = "noopener";
  const img = document.createElement("img");
  img.src = snapshot.annotated_url;
  img.alt = `${snapshot.source.replace("_", " ")} snapshot, ${snapshot.width}×${snapshot.height}`;
  link.append(img);
  const caption = document.createElement("span");
  caption.textContent = `${new Date(snapshot.taken_at).toLocaleTimeString()} · ${snapshot.source.replace("_", " ")} · ${snapshot.width}×${snapshot.height}`;
  const raw = document.createElement("a");
  raw.href = snapshot.raw_url;
  raw.target = "_blank";
  raw.rel = "noopener";
  raw.textContent = "original";
  const draw = document.createElement("button");
  draw.type = "button";
  draw.textContent = "Draw on it";
  draw.dataset.testid = "annotate-snapshot";
  draw.hidden = !leads;
  draw.addEventListener("click", () => editSnapshot(snapshot, snapshot.raw_url));
  li.replaceChildren(link, caption, raw, draw);
  if (!existing) $("snapshot-list").prepend(li);
  snapshotIds.add(snapshot.id);
  $("snapshot-count").textContent = String(snapshotIds.size);
}

// Drawing on a stored snapshot (a device photo): the stage shows it instead of the live picture.
function editSnapshot(snapshot, rawUrl) {
  editing = { ...snapshot, shapes: [...annotator.shapes] };
  const image = $("photo-view");
  image.src = rawUrl;
  image.hidden = false;
  video.hidden = true;
  $("frozen-view").hidden = true;
  annotator.shapes = (snapshot.annotations ?? []).map((s) => ({ ...s }));
  annotator.retarget(image);
  $("snapshot").textContent = "Save drawing";
  $("back-to-live").hidden = false;
  renderState();
}

function backToLive() {
  if (!editing) return;
  annotator.shapes = editing.shapes;
  editing = null;
  $("photo-view").hidden = true;
  showLive();
  $("snapshot").textContent = "Snapshot";
  $("back-to-live").hidden = true;
  renderState();
}

function takeSnapshot() {
  if ($("snapshot").disabled) return;
  const requestId = crypto.randomUUID?.() ?? String(Math.random()).slice(2);
  pending.set(requestId, performance.now());
  if (editing) {
    signalling.send({ type: ClientMessage.ANNOTATE, request_id: requestId, snapshot_id: editing.id, annotations: annotator.shapes });
    backToLive();
  } else {
    signalling.send({ type: ClientMessage.SNAPSHOT, request_id: requestId, annotations: annotator.toJSON() });
  }
}

function watch(source) {
  watching = source;
  for (const s of [Source.CAMERA, Source.SCREEN]) $(`source-${s}`).setAttribute("aria-pressed", String(s === source));
  signalling.send({ type: ClientMessage.WATCH, source });
  renderState();
}

function renderFrozen() {
  const button = $("freeze");
  button.setAttribute("aria-pressed", String(frozen));
  button.textContent = frozen ? "Unfreeze" : "Freeze";
  $("stage").classList.toggle("is-frozen", frozen);
  // The server forwards the live video untouched; the held picture is an image over it.
  const held = $("frozen-view");
  if (frozen) held.src = `/a/${token}/frozen.png?at=${Date.now()}`;
  else held.removeAttribute("src");
  if (!editing) showLive();
}

// The stage outside photo editing: the held picture while frozen, else the live video.
function showLive() {
  const held = $("frozen-view");
  held.hidden = !frozen;
  video.hidden = frozen;
  annotator.retarget(frozen ? held : video);
}

function renderCamera(state) {
  const note = [];
  const canSwitch = state.cameras > 1 || state.facing.length > 1;
  $("camera-switch").disabled = !canSwitch;
  if (!canSwitch) note.push("one camera only");
  $("torch").disabled = state.torch === null;
  $("torch").setAttribute("aria-pressed", String(Boolean(state.torch)));
  if (state.torch === null) note.push("no torch");
  const zoom = $("zoom");
  zoom.disabled = state.zoom === null;
  if (state.zoom !== null) {
    zoom.min = state.zoom_min;
    zoom.max = state.zoom_max;
    zoom.step = (state.zoom_max - state.zoom_min) / 20 || 0.1;
    zoom.value = state.zoom;
    $("zoom-value").textContent = `${Number(state.zoom).toFixed(1)}×`;
  } else note.push("no zoom");
  $("camera-note").textContent = state.error ? `The phone said: ${state.error}.` : note.length ? `This device has ${note.join(", ")}.` : "";
  $("camera-note").dataset.tone = state.error ? "error" : "info";
  $("camera-switch").dataset.facing = state.current_facing ?? "";
}

function renderQuality({ report, poor }) {
  const parts = [];
  if (report.profile === "audio_only") parts.push("video paused (audio and snapshots only)");
  else if (report.width) parts.push(`${report.width}×${report.height}`);
  if (report.fps !== null && report.profile !== "audio_only") parts.push(`${Math.round(report.fps)} fps`);
  if (report.bitrate_kbps !== null) parts.push(report.bitrate_kbps >= 1000 ? `${(report.bitrate_kbps / 1000).toFixed(1)} Mbps` : `${Math.round(report.bitrate_kbps)} kbps`);
  if (report.packet_loss !== null) parts.push(`${(report.packet_loss * 100).toFixed(1)}% loss`);
  if (report.rtt_ms !== null) parts.push(`${Math.round(report.rtt_ms)} ms RTT`);
  $("quality").textContent = parts.join(" · ");
  $("quality-warning").textContent = poor.length ? `Poor connection: ${poor.join("; ")}. Try a lower quality.` : "";
  $("quality-profile").value = report.profile;
}

async function setMic(on) {
  if (!(await microphone.set(on, { echoCancellation: true }))) {
    notify("The microphone is blocked for this page.", "error");
    return;
  }
  $("mute").setAttribute("aria-pressed", String(on));
  $("mute").textContent = on ? "Mute" : "Unmute";
}

async function toggleShare() {
  if (sharing) {
    sharing.getTracks().forEach((t) => t.stop());
    sharing = null;
  } else {
    try {
      sharing = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      return;
    }
    sharing.getVideoTracks()[0].addEventListener("ended", () => toggleShare());
  }
  $("staff-screen-share").setAttribute("aria-pressed", String(Boolean(sharing)));
  $("staff-screen-share").textContent = sharing ? "Stop showing my screen" : "Show my screen";
  peer.start(ice);
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
  if (tool !== "pointer") signalling.send({ type: ClientMessage.POINTER, point: null });
}

// Mirror the drawing (the stroke in progress too) and the laser pointer to everyone, throttled.
function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return (...args) => {
    clearTimeout(timer);
    const wait = last + ms - performance.now();
    if (wait <= 0) {
      last = performance.now();
      fn(...args);
    } else {
      timer = setTimeout(() => {
        last = performance.now();
        fn(...args);
      }, wait);
    }
  };
}
const mirror = throttle(() => {
  if (!editing) signalling.send({ type: ClientMessage.ANNOTATIONS, shapes: annotator.live() });
}, 40);
annotator.addEventListener("draw", mirror);
annotator.addEventListener("pointer", throttle(({ detail }) => signalling.send({ type: ClientMessage.POINTER, point: detail }), 30));

for (const button of document.querySelectorAll("[data-tool]")) button.addEventListener("click", () => selectTool(button.dataset.tool));
for (const swatch of document.querySelectorAll("[data-color]")) {
  swatch.addEventListener("click", () => {
    annotator.color = swatch.dataset.color;
    for (const s of document.querySelectorAll("[data-color]")) s.setAttribute("aria-pressed", String(s === swatch));
  });
}
$("undo").addEventListener("click", () => annotator.undo());
$("clear").addEventListener("click", () => annotator.clear());
$("snapshot").addEventListener("click", takeSnapshot);
$("back-to-live").addEventListener("click", backToLive);
$("freeze").addEventListener("click", () => signalling.send({ type: ClientMessage.FREEZE, frozen: !frozen }));
$("hd-photo").addEventListener("click", () => {
  signalling.send({ type: ClientMessage.PHOTO_REQUEST });
  notify("Asked the customer's phone for a full-resolution photo…");
});
$("source-camera").addEventListener("click", () => watch(Source.CAMERA));
$("source-screen").addEventListener("click", () => watch(Source.SCREEN));
$("camera-switch").addEventListener("click", () => {
  const facing = $("camera-switch").dataset.facing === "user" ? "environment" : "user";
  signalling.send({ type: ClientMessage.CAMERA, facing });
});
$("torch").addEventListener("click", () => signalling.send({ type: ClientMessage.CAMERA, torch: $("torch").getAttribute("aria-pressed") !== "true" }));
$("zoom").addEventListener("change", () => signalling.send({ type: ClientMessage.CAMERA, zoom: Number($("zoom").value) }));
$("zoom").addEventListener("input", () => ($("zoom-value").textContent = `${Number($("zoom").value).toFixed(1)}×`));
$("quality-profile").addEventListener("change", () => signalling.send({ type: ClientMessage.QUALITY_REQUEST, profile: $("quality-profile").value }));
$("mute").addEventListener("click", () => setMic(!microphone.on));
$("staff-screen-share").addEventListener("click", toggleShare);
$("invite-expert").addEventListener("click", () => signalling.send({ type: ClientMessage.INVITE, role: "expert" }));
$("invite-supervisor").addEventListener("click", () => signalling.send({ type: ClientMessage.INVITE, role: "supervisor" }));
$("copy-invite").addEventListener("click", () => navigator.clipboard?.writeText($("invite-link").value).then(() => notify("Link copied.")));
$("leave-session").addEventListener("click", () => {
  signalling.stop();
  peer.close();
  ended = true;
  $("ended-banner").hidden = false;
  $("ended-banner").textContent = "You left; the session carries on without you.";
  renderState();
});

$("outcome").addEventListener("change", () => ($("end-session").disabled = !$("outcome").value));
$("end-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const outcome = $("outcome").value;
  if (outcome) signalling.send({ type: ClientMessage.END, outcome, notes: $("notes").value });
});

// Keyboard: tool letters, P pointer, Ctrl/Cmd+Z undo, S snapshot, Z freeze; never while typing.
const KEYS = { a: "arrow", r: "rect", o: "ellipse", f: "freehand", t: "text", p: "pointer" };
document.addEventListener("keydown", (event) => {
  if (!leads || event.target.closest("input, textarea, select")) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    annotator.undo();
  } else if (!event.ctrlKey && !event.metaKey && !event.altKey) {
    const key = event.key.toLowerCase();
    if (KEYS[key]) selectTool(KEYS[key]);
    else if (key === "s") takeSnapshot();
    else if (key === "z" && !$("freeze").disabled) $("freeze").click();
  }
});

for (const tool of TOOLS) if (!document.querySelector(`[data-tool="${tool}"]`)) console.warn(`no button for ${tool}`);
selectTool("arrow");
renderState();
signalling.connect();
// A laptop that changed networks or woke from sleep: reconnect at once rather than trust the old socket.
window.addEventListener("online", () => signalling.reconnectNow());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !ended && peerState === "failed") peer.retry();
});
