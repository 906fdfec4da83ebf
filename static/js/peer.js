// One RTCPeerConnection to the server. The offer goes out at once and candidates trickle after it,
// so joining does not wait for ICE gathering. A failed connection is rebuilt with a fresh offer.
// prepare() builds the connection ahead of time (while the camera starts and the socket says hello),
// so the browser's media setup is not on the path to the first frame.
import { ClientMessage } from "./protocol.js";

export class ServerPeer extends EventTarget {
  #signalling;
  #setup;
  #iceServers = [];
  #named = new Map();
  #fresh = false; // built by prepare() and not offered yet
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
  async start(iceServers, { rebuild = false } = {}) {
    this.#iceServers = iceServers || [];
    if (!this.pc || !this.#fresh || rebuild) {
      this.close();
      this.#build();
    }
    this.#fresh = false;
    const pc = this.pc;
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.#iceServers });
    await pc.setLocalDescription(await pc.createOffer());
    const sources = {};
    for (const [transceiver, source] of this.#named) if (transceiver.mid) sources[transceiver.mid] = source;
    this.#signalling.send({ type: ClientMessage.OFFER, sdp: pc.localDescription.sdp, sources });
  }

  #build() {
    const pc = new RTCPeerConnection({ iceServers: this.#iceServers, bundlePolicy: "max-bundle" });
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
      this.dispatchEvent(new CustomEvent("state", { detail: pc.connectionState }));
      if (pc.connectionState === "failed" && this.#signalling.open) this.start(this.#iceServers);
    });
    pc.addEventListener("track", (event) => {
      this.dispatchEvent(new CustomEvent("track", { detail: event }));
    });
    this.#named = this.#setup(pc) ?? new Map();
  }

  async accept(sdp) {
    if (!this.pc || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  // The outbound video of one source, for stats and encoding parameters.
  sender(kind = "video") {
    return this.pc?.getSenders().find((s) => s.track?.kind === kind) ?? null;
  }

  close() {
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.close();
    }
  }
}
