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
