// The customer's page: consent, camera, one connection to the server, plain words at every step.
import { ErrorCode, ServerMessage } from "./protocol.js";
import { Signalling } from "./signalling.js";
import { ServerPeer } from "./peer.js";

const $ = (id) => document.getElementById(id);
const root = document.body;
const token = root.dataset.token;

const views = ["consent", "live", "problem", "finished"];
function show(view) {
  for (const name of views) $(`view-${name}`).hidden = name !== view;
}

function status(text, tone = "info") {
  const el = $("status");
  el.textContent = text;
  el.dataset.tone = tone;
}

function problem(title, text, { retry = true } = {}) {
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("retry").hidden = !retry;
  show("problem");
}

function finish(title, text) {
  stopCamera();
  signalling?.stop();
  peer?.close();
  $("finished-title").textContent = title;
  $("finished-text").textContent = text;
  show("finished");
}

let stream = null;
let signalling = null;
let peer = null;
let iceServers = [];
let welcomed = false;

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
}

// Rear camera first; any camera when the device has no rear one (laptops) or refuses the hint.
async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    const e = new Error("insecure");
    e.name = "InsecureContext";
    throw e;
  }
  const wanted = { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ video: wanted, audio: false });
  } catch (error) {
    if (error.name === "OverconstrainedError" || error.name === "NotFoundError") {
      return await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    }
    throw error;
  }
}

function explainCameraError(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return ["Camera access is off",
        "To show the agent, allow the camera for this page: tap the camera or lock icon next to the " +
        "address, choose Allow, then tap Try again. On iPhone: Settings > Safari > Camera > Allow."];
    case "NotFoundError":
    case "OverconstrainedError":
      return ["No camera found", "This device doesn't seem to have a camera we can use. Try opening the link on your phone."];
    case "NotReadableError":
    case "AbortError":
      return ["The camera is busy", "Another app may be using the camera. Close it (or end a video call) and tap Try again."];
    case "InsecureContext":
      return ["This page can't use the camera", "The link must be opened over a secure (https) connection. Ask your support contact for a new link."];
    default:
      return ["The camera didn't start", `Tap Try again. If it keeps happening, tell your support contact (${error.name}).`];
  }
}

function connect() {
  signalling = new Signalling(token);
  peer = new ServerPeer(signalling, (pc) => {
    for (const track of stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  });
  peer.addEventListener("state", ({ detail }) => {
    if (detail === "connected") status("Live: the agent can see your camera", "ok");
    else if (detail === "connecting" || detail === "new") status("Connecting…");
    else if (detail === "disconnected" || detail === "failed") status("Connection lost, reconnecting…", "warn");
  });
  signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
    iceServers = detail.ice_servers;
    welcomed = true;
    $("agent-name").textContent = detail.participants.find((p) => p.role === "agent")?.name ?? "your agent";
    if (stream) peer.start(iceServers);
  });
  signalling.addEventListener(ServerMessage.ANSWER, ({ detail }) => peer.accept(detail.sdp));
  signalling.addEventListener(ServerMessage.PRESENCE, ({ detail }) => {
    const agent = detail.participants.find((p) => p.role === "agent");
    $("agent-presence").textContent = agent?.connected ? "Your agent is watching." : "Waiting for your agent to join…";
  });
  signalling.addEventListener("reconnecting", () => {
    welcomed = false;
    status("Connection lost, reconnecting…", "warn");
    peer.close();
  });
  signalling.addEventListener(ServerMessage.ENDED, ({ detail }) => {
    if (detail.status === "expired") finish("This session has expired", "Thank you. If you still need help, reply to your support ticket.");
    else finish("The session has ended", "Thank you for showing us. You can close this page.");
  });
  signalling.addEventListener(ServerMessage.ERROR, ({ detail }) => {
    if (detail.code === ErrorCode.SESSION_ENDED) finish("This session has ended", "Thank you. You can close this page.");
    else if (detail.code === ErrorCode.SESSION_EXPIRED) finish("This link has expired", "Ask your support contact for a new link.");
    else if (detail.code === ErrorCode.INVALID_TOKEN) finish("This link isn't valid", "Ask your support contact for a new link.");
    else if (detail.code === ErrorCode.REPLACED) finish("Opened somewhere else", "This link was opened on another screen, so it stopped here.");
  });
  signalling.connect();
}

// The socket opens while the camera starts (a phone's camera can take a second), so the offer can go
// out the moment the camera is ready. The agent sees the customer arrive even if the camera fails.
async function join() {
  const button = $("join");
  button.disabled = true;
  status("Starting your camera…");
  const camera = openCamera();
  if (!signalling) connect();
  try {
    stream = await camera;
  } catch (error) {
    button.disabled = false;
    const [title, text] = explainCameraError(error);
    problem(title, text);
    return;
  }
  const video = $("local-video");
  video.srcObject = stream;
  // iOS Safari plays inline only when muted + playsinline, and only after a user gesture (this tap).
  video.play().catch(() => {});
  show("live");
  status("Connecting…");
  stream.getVideoTracks()[0]?.addEventListener("ended", () => {
    stream = null;
    peer?.close();
    problem("The camera stopped", "Your camera was turned off or taken by another app. Tap Try again.");
  });
  if (welcomed) peer.start(iceServers);
}

function leave() {
  finish("You left the session", "The agent can no longer see your camera. To rejoin, open the link again.");
}

$("join").addEventListener("click", join);
$("retry").addEventListener("click", () => {
  show("consent");
  join();
});
$("leave").addEventListener("click", leave);
window.addEventListener("offline", () => status("You're offline. We'll reconnect when the network is back.", "warn"));
show("consent");
