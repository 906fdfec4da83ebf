// The signalling socket: hello handshake, typed messages, automatic reconnection with backoff.
import { ClientMessage, ErrorCode, FATAL_ERRORS, PROTOCOL_VERSION, ServerMessage } from "./protocol.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
// A restarting server (its `restarting` message or close code 1012) is back within seconds: retry
// every 100-250 ms (spread, so pages do not all arrive at once) for this long, then back off as usual.
const RESTART_WINDOW_MS = 20000;
const SERVICE_RESTART = 1012;

export class Signalling extends EventTarget {
  #token;
  #ws = null;
  #attempt = 0;
  #stopped = false;
  #timer = null;
  #restartUntil = 0;

  constructor(token) {
    super();
    this.#token = token;
  }

  get open() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.#stopped = false;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.#ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: ClientMessage.HELLO, protocol: PROTOCOL_VERSION, token: this.#token }));
    });
    ws.addEventListener("message", (event) => this.#receive(event));
    ws.addEventListener("close", (event) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (this.#stopped) return;
      if (event.code === SERVICE_RESTART) this.#restarted();
      let delay;
      if (Date.now() < this.#restartUntil) {
        delay = 100 + Math.random() * 150;
      } else {
        delay = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
        this.#attempt += 1;
      }
      this.#emit("reconnecting", { delay });
      this.#timer = setTimeout(() => this.connect(), delay);
    });
  }

  send(message) {
    if (!this.open) return false;
    this.#ws.send(JSON.stringify(message));
    return true;
  }

  // Leave for good: no reconnection.
  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#ws) this.#ws.close(1000);
  }

  #receive(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === ServerMessage.WELCOME) {
      this.#attempt = 0;
      this.#restartUntil = 0;
    }
    if (message.type === ServerMessage.RESTARTING) this.#restarted();
    if (message.type === ServerMessage.ENDED) this.#stopped = true;
    if (message.type === ServerMessage.ERROR && FATAL_ERRORS.has(message.code)) this.#stopped = true;
    this.#emit(message.type, message);
  }

  #restarted() {
    if (this.#restartUntil === 0) this.#restartUntil = Date.now() + RESTART_WINDOW_MS;
    this.#attempt = 0;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export { ErrorCode };
