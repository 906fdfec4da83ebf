// One RTCPeerConnection to the server. The offer goes out at once and candidates trickle after it,
// so joining does not wait for ICE gathering. A failed connection is rebuilt with a fresh offer.
import { ClientMessage } from "./protocol.js";

export class ServerPeer extends EventTarget {
  #signalling;
  #setup;
  #iceServers = [];
  pc = null;

  // setup(pc) adds the tracks or transceivers this side sends or receives.
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
    this.#setup(pc);
    await pc.setLocalDescription(await pc.createOffer());
    this.#signalling.send({ type: ClientMessage.OFFER, sdp: pc.localDescription.sdp });
  }

  async accept(sdp) {
    if (!this.pc || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  close() {
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.close();
    }
  }
}
