// Voice on a page: the microphone going out and the voices coming back.
import { ClientMessage } from "../lib/protocol.js";

// The voices coming back from the server. The <audio> element is only fed while someone else can
// be heard: a browser plays (and spends CPU on) an attached track even when it carries nothing.
export class RemoteVoice {
  #element;
  #track = null;
  #audible = false;

  constructor(element) {
    this.#element = element;
  }

  setTrack(track) {
    this.#track = track;
    this.#render();
  }

  // From presence: is anyone else (who may speak) unmuted?
  update(participants, me) {
    this.#audible = participants.some((p) => p.id !== me && p.connected && !p.muted && p.role !== "supervisor");
    this.#render();
  }

  #render() {
    const wanted = this.#audible && this.#track ? this.#track : null;
    const current = this.#element.srcObject?.getAudioTracks()[0] ?? null;
    if (wanted === current) return;
    this.#element.srcObject = wanted ? new MediaStream([wanted]) : null;
    if (wanted) this.#element.play().catch(() => {});
  }
}

// This page's microphone. It joins the peer connection's audio section with replaceTrack, so turning
// it on never needs a new offer (which Safari might refuse mid-call); the server hears of every
// change, and again after a reconnect, since it forgets who was unmuted when a socket drops.
export class Microphone {
  #track = null;
  #section = null; // the audio transceiver of the current peer connection
  #signalling;

  constructor(signalling) {
    this.#signalling = signalling;
  }

  get on() {
    return this.#track?.enabled ?? false;
  }

  get started() {
    return this.#track !== null;
  }

  // The audio section of a new peer connection: it sends the microphone once there is one.
  addSection(pc, direction = "sendrecv") {
    this.#section = pc.addTransceiver(this.#track ?? "audio", { direction });
  }

  // Turn it on or off; false when the browser refused the microphone.
  async set(on, constraints) {
    if (on && !this.#track) {
      try {
        this.#track = (await navigator.mediaDevices.getUserMedia({ audio: constraints })).getAudioTracks()[0];
      } catch {
        return false;
      }
      await this.#section?.sender.replaceTrack(this.#track);
    }
    if (this.#track) this.#track.enabled = on;
    this.#signalling.send({ type: ClientMessage.MUTE, muted: !on });
    return true;
  }

  restate() {
    if (this.#track) this.#signalling.send({ type: ClientMessage.MUTE, muted: !this.#track.enabled });
  }

  stop() {
    this.#track?.stop();
    this.#track = null;
  }
}
