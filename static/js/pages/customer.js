// The customer's page: consent, camera (and screen, and voice), one connection to the server, and
// plain words at every step. Mobile first; written for iOS Safari too (untested there, see README).
import { Overlay } from "../components/annotator.js";
import { ChatPanel } from "../components/chat.js";
import { applyCamera, applyProfile, describeCamera, switchCamera, takePhoto, UplinkMeter } from "../lib/device.js";
import { ServerPeer, iceConfiguration } from "../lib/peer.js";
import { ClientMessage, ErrorCode, ServerMessage, Source } from "../lib/protocol.js";
import { Signalling } from "../lib/signalling.js";
import { Microphone, RemoteVoice } from "../components/voice.js";

const $ = (id) => document.getElementById(id);
const token = document.body.dataset.token;

const views = ["consent", "live", "problem", "finished"];
function show(view) {
  for (const name of views) $(`view-${name}`).hidden = name !== view;
}

function status(text, tone = "info") {
  const el = $("status");
  el.textContent = text;
  el.dataset.tone = tone;
}

// What the customer is told about the call, from what is true now: the socket, the media connection,
// and whether the server is receiving the picture (it says when frames stop arriving).
const PAUSED = "Picture paused: weak connection";
const link = { stalled: false, cameraRestarting: false };
function showLink() {
  if (!signalling || !peer) return;
  const state = peer.state;
  if (link.cameraRestarting) status("The camera stopped: starting it again…", "warn");
  else if (!signalling.open && !navigator.onLine) status("You're offline. We'll reconnect when the network is back.", "warn");
  else if (!signalling.open || !welcomed || state === "failed") status("Reconnecting…", "warn");
  else if (state === "disconnected" || (state === "connected" && link.stalled)) status(PAUSED, "warn");
  else if (state === "connected") status("Live: the agent can see your camera", "ok");
  else status("Connecting…");
}

let toastTimer = null;
function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

function problem(title, text, { retry = true } = {}) {
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("retry").hidden = !retry;
  show("problem");
}

function finish(title, text) {
  stopAll();
  signalling?.stop();
  peer?.close();
  $("finished-title").textContent = title;
  $("finished-text").textContent = text;
  show("finished");
}

let camera = null; // MediaStream of the camera
let screen = null; // MediaStream of a shared screen
let microphone = null; // a Microphone, once the socket exists
let signalling = null;
let peer = null;
let ice = { iceServers: [] };
let welcomed = false;
let profile = "high";
const meter = new UplinkMeter();
const overlay = new Overlay($("overlay"), $("local-video"));
const voice = new RemoteVoice($("remote-audio"));
let me = null;

function stopAll() {
  for (const s of [camera, screen]) s?.getTracks().forEach((t) => t.stop());
  microphone?.stop();
  camera = screen = null;
}

// Rear camera first; any camera when the device has no rear one (laptops) or refuses the hint.
async function openCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia || !window.RTCPeerConnection) {
    const e = new Error("unsupported");
    e.name = window.isSecureContext ? "UnsupportedBrowser" : "InsecureContext";
    throw e;
  }
  // zoom: true asks for the zoom capability where the browser gates it (Chrome), ignored elsewhere.
  const wanted = { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 }, zoom: true };
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
    case "UnsupportedBrowser":
      return ["This browser can't make video calls", "Open the link in a recent Chrome, Safari, Firefox or Edge (copy it from the message you were sent)."];
    default:
      return ["The camera didn't start", `Tap Try again. If it keeps happening, tell your support contact (${error.name}).`];
  }
}

// How starting the camera went, for the timeline (the join funnel): camera.allowed, or camera.failed
// with the protocol's reason from the browser's error name. The camera can answer before the socket is
// welcomed, so reports wait for it.
const CAMERA_FAILURES = {
  NotAllowedError: "refused", SecurityError: "refused", NotFoundError: "missing",
  OverconstrainedError: "missing", NotReadableError: "busy", AbortError: "busy",
  UnsupportedBrowser: "unsupported", InsecureContext: "insecure",
};
const cameraReports = [];
function reportCameraAccess(error = null) {
  cameraReports.push(error
    ? { type: ClientMessage.CAMERA_FAILED, reason: CAMERA_FAILURES[error.name] ?? "other",
      error: (String(error.name).replace(/[^A-Za-z]/g, "") || "Error").slice(0, 64) }
    : { type: ClientMessage.CAMERA_ALLOWED });
  sendCameraReports();
}
function sendCameraReports() {
  while (welcomed && cameraReports.length && signalling?.send(cameraReports[0])) cameraReports.shift();
}

// The peer connection carries: the camera, a shared screen (if any), the agent's shared screen
// coming back, and two-way audio (the mic joins the same section later, without renegotiating).
let cameraSection = null; // the camera's transceiver: the track may arrive after it is built

function setupPeer(pc) {
  const named = new Map();
  cameraSection = pc.addTransceiver(camera?.getVideoTracks()[0] ?? "video", { direction: "sendonly" });
  named.set(cameraSection, Source.CAMERA);
  const screenTrack = screen?.getVideoTracks()[0];
  if (screenTrack) named.set(pc.addTransceiver(screenTrack, { direction: "sendonly", streams: [screen] }), Source.SCREEN);
  pc.addTransceiver("video", { direction: "recvonly" });
  microphone.addSection(pc);
  return named;
}

function startPeer(rebuild = false) {
  const track = camera?.getVideoTracks()[0] ?? null;
  if (cameraSection && cameraSection.sender.track !== track) cameraSection.sender.replaceTrack(track);
  if (!welcomed || !(camera || screen)) return;
  // Encoder settings are touched only when the agent asked for less: setParameters on a fresh
  // sender reconfigures the encoder and delays the first frame.
  peer.start(ice, { rebuild })
    .then(() => profile !== "high" && applyProfile(peer.sender(), profile))
    .catch(() => {});
}

function connect() {
  signalling = new Signalling(token);
  microphone = new Microphone(signalling);
  peer = new ServerPeer(signalling, setupPeer);
  peer.addEventListener("state", ({ detail }) => {
    if (detail === "connecting" || detail === "failed") link.stalled = false; // a new picture is on its way
    showLink();
  });
  peer.addEventListener("track", ({ detail }) => {
    if (detail.track.kind === "audio") {
      voice.setTrack(detail.track);
    } else {
      $("staff-screen").srcObject = new MediaStream([detail.track]);
    }
  });
  // The whole line is rewritten each time (no element inside it to look up), so a welcome after a
  // presence update, as on every rejoin after a server restart, cannot fail before the peer starts.
  function showPresence(participants) {
    const staff = participants.filter((p) => p.role !== "customer" && p.connected);
    const agent = participants.find((p) => p.role === "agent")?.name ?? "your agent";
    $("agent-presence").textContent = staff.length
      ? `Watching: ${staff.map((p) => p.name).join(", ")}.`
      : `Waiting for ${agent} to join…`;
  }
  signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
    ice = iceConfiguration(detail);
    welcomed = true;
    link.stalled = false;
    me = detail.participant.id;
    voice.update(detail.participants, me);
    showPresence(detail.participants);
    setFrozen(detail.frozen);
    if (detail.audio && !microphone.started) setMic(true);
    else microphone.restate();
    sendCameraReports();
    startPeer();
  });
  signalling.addEventListener(ServerMessage.ANSWER, ({ detail }) => peer.accept(detail.sdp, detail.id));
  signalling.addEventListener(ServerMessage.PRESENCE, ({ detail }) => {
    voice.update(detail.participants, me);
    showPresence(detail.participants);
  });
  signalling.addEventListener(ServerMessage.MEDIA, ({ detail }) => {
    if (detail.source !== Source.STAFF_SCREEN) {
      // The picture we send: is it reaching the server?
      if (detail.source === (screen && !camera ? Source.SCREEN : Source.CAMERA)) {
        link.stalled = detail.state === "stalled";
        showLink();
      }
      return;
    }
    const live = detail.state === "live";
    $("staff-screen-box").hidden = !live;
    if (live) {
      $("staff-screen").play().catch(() => {});
      toast("Your agent is showing you their screen.");
    }
  });
  signalling.addEventListener(ServerMessage.ANNOTATIONS, ({ detail }) => overlay.setShapes(detail.by, detail.shapes));
  signalling.addEventListener(ServerMessage.POINTER, ({ detail }) => overlay.setPointer(detail.by, detail.point));
  signalling.addEventListener(ServerMessage.FROZEN, ({ detail }) => setFrozen(detail.frozen));
  signalling.addEventListener(ServerMessage.PHOTO_REQUESTED, () => sendPhoto());
  signalling.addEventListener(ServerMessage.CAMERA, ({ detail }) => controlCamera(detail));
  signalling.addEventListener(ServerMessage.QUALITY_REQUEST, ({ detail }) => {
    profile = detail.profile;
    applyProfile(peer.sender(), profile).catch(() => {});
    $("local-video").classList.toggle("paused", profile === "audio_only");
    toast(profile === "audio_only" ? "Video paused to save your connection: you can still talk."
      : "The agent changed the video quality to suit your connection.");
  });
  signalling.addEventListener("reconnecting", () => {
    welcomed = false;
    link.stalled = false;
    peer.close();
    showLink();
  });
  signalling.addEventListener(ServerMessage.ENDED, ({ detail }) => {
    if (detail.status === "expired") finish("This session has expired", "Thank you. If you still need help, reply to your support ticket.");
    else if (detail.status === "revoked") finish("This link was withdrawn", "Ask your support contact for a new link if you still need help.");
    else {
      finish("The session has ended", "Thank you for showing us.");
      $("rating-form").hidden = false;
    }
  });
  signalling.addEventListener(ServerMessage.ERROR, ({ detail }) => {
    if (detail.code === ErrorCode.SESSION_ENDED) finish("This session has ended", "Thank you. You can close this page.");
    else if (detail.code === ErrorCode.SESSION_REVOKED) finish("This link was withdrawn", "Ask your support contact for a new link if you still need help.");
    else if (detail.code === ErrorCode.SESSION_EXPIRED) finish("This link has expired", "Ask your support contact for a new link.");
    else if (detail.code === ErrorCode.INVALID_TOKEN) finish("This link isn't valid", "Ask your support contact for a new link.");
    else if (detail.code === ErrorCode.REPLACED) finish("Opened somewhere else", "This link was opened on another screen, so it stopped here.");
    else if (detail.code === ErrorCode.SERVER_BUSY) toast("We're very busy right now: trying again in a moment…");
    else if (detail.code === ErrorCode.MEDIA_FAILED && detail.ref === ClientMessage.OFFER) peer.retry();
    else if (detail.ref === ClientMessage.CHAT) toast(`Message not sent: ${detail.message}`);
  });
  new ChatPanel(signalling, {
    log: $("chat-log"), form: $("chat-form"), input: $("chat-input"),
    onMessage: (m) => {
      if ($("chat").hidden) toast(`${m.name}: ${m.text}`);
    },
  });
  signalling.connect();
  setInterval(reportQuality, 2000);
}

// The socket opens while the camera starts (a phone's camera can take a second), so the offer can go
// out the moment the camera is ready. The agent sees the customer arrive even if the camera fails.
async function join() {
  const button = $("join");
  button.disabled = true;
  // iOS Safari lets a media element play later only if play() was first called inside a tap.
  $("remote-audio").play().catch(() => {});
  $("staff-screen").play().catch(() => {});
  status("Starting your camera…");
  const opening = openCamera();
  if (!signalling) connect();
  peer.prepare();
  try {
    camera = await opening;
  } catch (error) {
    button.disabled = false;
    reportCameraAccess(error);
    const [title, text] = explainCameraError(error);
    problem(title, text);
    // A desktop without a usable camera can still show the problem on its screen.
    $("screen-instead").hidden = !canShareScreen || ["InsecureContext", "UnsupportedBrowser"].includes(error.name);
    return;
  }
  reportCameraAccess();
  showCamera();
  show("live");
  showLink();
  startPeer();
  reportCamera();
}

function showCamera() {
  const video = $("local-video");
  video.srcObject = camera;
  // iOS Safari plays inline only when muted + playsinline, and only after a user gesture (the tap).
  video.play().catch(() => {});
  const track = camera.getVideoTracks()[0];
  track?.addEventListener("ended", () => {
    if (camera?.getVideoTracks()[0] === track) restartCamera();
  });
}

// The camera stopped under us (another app took it, the phone suspended it in the background, the
// device went away): start it again by ourselves, a few times, before asking the customer to.
const CAMERA_RETRY_MS = [0, 1000, 2000, 4000];
async function restartCamera() {
  if (link.cameraRestarting) return;
  link.cameraRestarting = true;
  showLink();
  camera = null;
  for (const wait of CAMERA_RETRY_MS) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    if (document.hidden) await new Promise((resolve) => document.addEventListener("visibilitychange", resolve, { once: true }));
    try {
      const next = await openCamera();
      if (!$("view-finished").hidden) return next.getTracks().forEach((t) => t.stop()); // left meanwhile
      camera = next;
      link.cameraRestarting = false;
      showCamera();
      // Connected: the new track goes on the same section, with no new offer.
      if (peer.state === "connected" && cameraSection) await cameraSection.sender.replaceTrack(camera.getVideoTracks()[0]);
      else startPeer();
      showLink();
      reportCamera();
      return;
    } catch {
      // try again
    }
  }
  link.cameraRestarting = false;
  peer?.close();
  problem("The camera stopped", "Your camera was turned off or taken by another app. Tap Try again.");
}

// Microphone: off unless the session asked for it or the customer turns it on.
async function setMic(on) {
  if (!microphone) return;
  if (!(await microphone.set(on, { echoCancellation: true, noiseSuppression: true }))) {
    toast("The microphone is blocked. You can keep talking on the phone instead.");
    return;
  }
  const button = $("mute");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Mute microphone" : "Turn microphone on";
}

// Screen sharing, where the browser can (desktops). Phones are told, not shown a broken button.
const canShareScreen = Boolean(navigator.mediaDevices?.getDisplayMedia);
async function toggleScreen() {
  if (screen) {
    screen.getTracks().forEach((t) => t.stop());
    screen = null;
  } else {
    try {
      screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      toast("Screen sharing was cancelled.");
      return;
    }
    screen.getVideoTracks()[0].addEventListener("ended", () => {
      screen = null;
      renderScreenButton();
      startPeer(true);
    });
  }
  renderScreenButton();
  startPeer(true); // a new section: a new offer
}

// Screen instead of the camera: the preview shows the shared screen, the agent watches Screen.
async function shareScreenInstead() {
  await toggleScreen();
  if (!screen) return;
  $("local-video").srcObject = screen;
  $("local-video").play().catch(() => {});
  show("live");
  status("Connecting…");
}

function renderScreenButton() {
  const button = $("screen-share");
  button.setAttribute("aria-pressed", String(Boolean(screen)));
  button.textContent = screen ? "Stop sharing screen" : "Share my screen";
}

function setFrozen(frozen) {
  $("frozen-box").hidden = !frozen;
  if (frozen) {
    $("frozen-frame").src = `/s/${token}/frozen.png?at=${Date.now()}`;
    toast("The agent paused the picture to look closely. Keep the phone where it is.");
  }
}

async function sendPhoto() {
  const track = camera?.getVideoTracks()[0];
  if (!track) return;
  toast("The agent is taking a photo…");
  $("flash").hidden = false;
  setTimeout(() => ($("flash").hidden = true), 250);
  try {
    const photo = await takePhoto(track);
    const response = await fetch(`/s/${token}/photos`, { method: "POST", body: photo, headers: { "Content-Type": photo.type || "image/jpeg" } });
    if (!response.ok) throw new Error((await response.json()).error?.message ?? response.statusText);
    toast("Photo sent to the agent.");
  } catch (error) {
    toast(`The photo couldn't be sent: ${error.message}`);
  }
}

async function reportCamera(error = null) {
  const track = camera?.getVideoTracks()[0];
  signalling?.send({ type: ClientMessage.CAMERA_STATE, ...(await describeCamera(track, error)) });
}

async function controlCamera(request) {
  let error = null;
  try {
    if (request.facing) {
      const next = await switchCamera(camera?.getVideoTracks()[0], request.facing);
      const track = next.getVideoTracks()[0];
      const sender = peer.sender();
      await sender?.replaceTrack(track);
      camera?.getTracks().forEach((t) => t.stop());
      camera = next;
      showCamera();
      if (profile !== "high") await applyProfile(sender, profile);
      toast("The agent switched your camera.");
    }
    const track = camera?.getVideoTracks()[0];
    if (track) await applyCamera(track, request);
  } catch (e) {
    error = e.message || e.name;
  }
  await reportCamera(error);
}

async function reportQuality() {
  if (!signalling?.open || !peer?.pc) return;
  const stats = await meter.measure(peer.sender()).catch(() => null);
  if (stats) signalling.send({ type: ClientMessage.QUALITY, ...stats, profile });
}

function leave() {
  finish("You left the session", "The agent can no longer see your camera. To rejoin, open the link again.");
}

// Customer satisfaction: one 1-5 rating and an optional comment, once the session has ended.
$("rating-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const rating = Number(new FormData($("rating-form")).get("rating"));
  const response = await fetch(`/s/${token}/rating`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ rating, comment: $("rating-comment").value.trim() }),
  }).catch(() => null);
  if (response?.ok || response?.status === 409) {
    $("rating-form").hidden = true;
    $("rating-thanks").hidden = false;
  } else {
    $("rating-thanks").hidden = false;
    $("rating-thanks").textContent = "Your feedback couldn't be sent. Please try again.";
  }
});

$("join").addEventListener("click", join);
$("retry").addEventListener("click", () => {
  show("consent");
  join();
});
$("leave").addEventListener("click", leave);
$("mute").addEventListener("click", () => setMic(!(microphone?.on ?? false)));
$("toggle-chat").addEventListener("click", () => {
  $("chat").hidden = !$("chat").hidden;
  $("toggle-chat").setAttribute("aria-expanded", String(!$("chat").hidden));
});
$("screen-instead").addEventListener("click", shareScreenInstead);
if (canShareScreen) {
  $("screen-share").addEventListener("click", toggleScreen);
} else {
  $("screen-share").hidden = true;
  $("screen-share-note").hidden = false;
}
// The phone changed networks or came back online: reconnect at once instead of waiting on a socket
// that may be dead. Back from the background: check the camera and the connection.
window.addEventListener("offline", showLink);
window.addEventListener("online", () => signalling?.reconnectNow());
navigator.connection?.addEventListener?.("change", () => signalling?.reconnectNow());
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !signalling || !welcomed) return;
  if (camera && camera.getVideoTracks()[0]?.readyState === "ended") restartCamera();
  else if (!signalling.open) signalling.reconnectNow();
  else if (peer.state === "failed" || peer.state === "closed") peer.retry();
});
show("consent");
// Moved here from a node that stopped answering, mid-call: the customer agreed already.
if (location.hash === "#resume") {
  history.replaceState(null, "", location.pathname + location.search);
  join();
}
