// Chat, the same on both pages. Messages are rendered as text (never HTML): a message of
// <img src=x onerror=alert(1)> shows as those characters.
import { ClientMessage, ServerMessage } from "../lib/protocol.js";

export class ChatPanel {
  #log;
  #seen = new Set();
  #me = null;

  constructor(signalling, { log, form, input, onMessage = () => {} }) {
    this.#log = log;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (signalling.send({ type: ClientMessage.CHAT, text })) input.value = "";
    });
    signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
      this.#me = detail.participant.id;
      for (const message of detail.chat) this.add(message);
    });
    signalling.addEventListener(ServerMessage.CHAT, ({ detail }) => {
      this.add(detail.message);
      if (detail.message.from !== this.#me) onMessage(detail.message);
    });
  }

  add(message) {
    if (this.#seen.has(message.id)) return;
    this.#seen.add(message.id);
    const item = document.createElement("li");
    item.dataset.mine = String(message.from === this.#me);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = message.from === this.#me ? "You" : message.name;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    const at = document.createElement("time");
    at.dateTime = message.at;
    at.textContent = new Date(message.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.append(who, text, at);
    this.#log.append(item);
    this.#log.scrollTop = this.#log.scrollHeight;
  }
}
