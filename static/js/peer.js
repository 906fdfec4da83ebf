// One RTCPeerConnection to the server. The offer goes out at once and candidates trickle after it,
// so joining does not wait for ICE gathering. A failed connection is rebuilt with a fresh offer.
import { ClientMessage } from "./protocol.js";

export class ServerPeer extends EventTarget {
  #signalling;
  #setup;
  #iceServers = [];
  pc = null;

  // setup(pc) adds the transceivers this side sends or receives, and may return a Map from each
  // sending video transceiver to the source it carries ("camera", "screen", "staff_screen").
  constructor(signalling, setup) {
    super();
    this.#signalling = signalling;
    this.#setup = setup;
  }

  async start(iceServers) {
    this.#iceServers = iceServers || [];
    this.close();
    const pc = new RTCPeerConnection({ iceServers: this.#iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
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
    const named = this.#setup(pc) ?? new Map();
    await pc.setLocalDescription(await pc.createOffer());
    const sources = {};
    for (const [transceiver, source] of named) if (transceiver.mid) sources[transceiver.mid] = source;
    this.#signalling.send({ type: ClientMessage.OFFER, sdp: pc.localDescription.sdp, sources });
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
