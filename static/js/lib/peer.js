// One RTCPeerConnection to the server. The offer goes out at once and candidates trickle after it,
// so joining does not wait for ICE gathering. A failed connection is rebuilt with a fresh offer, after
// a pause that grows while attempts keep failing (a network that is down must not be hammered).
// prepare() builds the connection ahead of time (while the camera starts and the socket says hello),
// so the browser's media setup is not on the path to the first frame.
import { ClientMessage } from "./protocol.js";

// The ICE part of the RTCConfiguration a welcome message asks for: STUN/TURN servers (TURN with this
// participant's own short-lived credentials) and, with the server's --ice-relay-only, TURN only.
export function iceConfiguration(welcome) {
  return { iceServers: welcome.ice_servers, iceTransportPolicy: welcome.ice_transport_policy ?? "all" };
}

// Milliseconds before each new attempt after a failure; the last is the longest wait, so media is back
// within about that long of the network returning.
const RETRY_MS = [0, 500, 1000, 2000];
// A connection that has not connected this long after the answer never will (UDP blocked and no TURN,
// no usable network interface): it counts as failed. ICE and DTLS take well under 2 s on most networks.
const CONNECT_MS = 10000;

export class ServerPeer extends EventTarget {
  #signalling;
  #setup;
  #ice = { iceServers: [] }; // RTCConfiguration's ICE part, from the server's welcome
  #named = new Map();
  #fresh = false; // built by prepare() and not offered yet
  #offerId = 0; // the offer the server's next answer must carry
  #failures = 0;
  #retry = null;
  #deadline = null;
  pc = null;

  // setup(pc) adds the transceivers this side sends or receives, and may return a Map from each
  // sending video transceiver to the source it carries ("camera", "screen", "staff_screen").
  constructor(signalling, setup) {
    super();
    this.#signalling = signalling;
    this.#setup = setup;
  }

  prepare() {
    if (!this.pc) this.#build();
  }

  // rebuild: the sections changed (a screen share started or stopped), so a prepared one won't do.
  async start(ice, { rebuild = false } = {}) {
    clearTimeout(this.#retry);
    this.#retry = null;
    this.#ice = ice || { iceServers: [] };
    if (!this.pc || !this.#fresh || rebuild) {
      this.close();
      this.#build();
    }
    this.#fresh = false;
    const pc = this.pc;
    pc.setConfiguration({ ...pc.getConfiguration(), ...this.#ice });
    await pc.setLocalDescription(await pc.createOffer());
    if (this.pc !== pc) return; // replaced while the offer was made
    const sources = {};
    for (const [transceiver, source] of this.#named) if (transceiver.mid) sources[transceiver.mid] = source;
    this.#offerId += 1;
    this.#signalling.send({ type: ClientMessage.OFFER, sdp: pc.localDescription.sdp, sources, id: this.#offerId });
  }

  // The connection failed (or the server said it could not serve it): try again with a fresh offer,
  // waiting longer each time it fails in a row.
  retry() {
    if (this.#retry !== null || !this.#signalling.open) return;
    const delay = RETRY_MS[Math.min(this.#failures, RETRY_MS.length - 1)];
    this.#failures += 1;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#signalling.open) this.start(this.#ice).catch(() => this.retry());
    }, delay);
  }

  #build() {
    const pc = new RTCPeerConnection({ ...this.#ice, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.#fresh = true;
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (this.pc !== pc) return;
      this.#signalling.send({
        type: ClientMessage.ICE,
        candidate: candidate ? candidate.candidate : null,
        sdpMid: candidate ? candidate.sdpMid : null,
        sdpMLineIndex: candidate ? candidate.sdpMLineIndex : null,
      });
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === "connected") {
        this.#failures = 0;
        clearTimeout(this.#deadline); // it connected: a later drop is not a failure to connect
      }
      this.dispatchEvent(new CustomEvent("state", { detail: pc.connectionState }));
      if (pc.connectionState === "failed") this.retry();
    });
    pc.addEventListener("track", (event) => {
      this.dispatchEvent(new CustomEvent("track", { detail: event }));
    });
    this.#named = this.#setup(pc) ?? new Map();
  }

  // The server's answer; one to an older offer (or to none) is ignored.
  async accept(sdp, id) {
    const pc = this.pc;
    if (!pc || pc.signalingState !== "have-local-offer" || (id != null && id !== this.#offerId)) return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
    } catch {
      if (this.pc === pc) this.retry();
      return;
    }
    clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => {
      if (this.pc === pc && pc.connectionState !== "connected") this.retry();
    }, CONNECT_MS);
  }

  get state() {
    return this.pc?.connectionState ?? "new";
  }

  // The outbound video of one source, for stats and encoding parameters.
  sender(kind = "video") {
    return this.pc?.getSenders().find((s) => s.track?.kind === kind) ?? null;
  }

  close() {
    clearTimeout(this.#deadline);
    clearTimeout(this.#retry);
    this.#retry = null;
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.close();
    }
  }
}
