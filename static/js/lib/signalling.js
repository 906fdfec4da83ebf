// The signalling socket: hello handshake, typed messages, automatic reconnection with backoff.
// A socket can die without closing (the phone's network drops, TCP keeps retrying for minutes), so
// the client pings and gives up on a socket that has said nothing for SILENCE_MS; an attempt to
// connect that has not opened within CONNECT_MS is abandoned too. With the backoff capped at 2 s, the
// page is back within a few seconds of the network returning, however long it was gone.
import { ClientMessage, ErrorCode, FATAL_ERRORS, PROTOCOL_VERSION, ServerMessage } from "./protocol.js";

const BACKOFF_MS = [250, 500, 1000, 2000];
const PING_MS = 2000;
const SILENCE_MS = 5000;
const CONNECT_MS = 4000;
// A restarting server (its `restarting` message or close code 1012) is back within seconds: retry
// every 100-250 ms (spread, so pages do not all arrive at once) for this long, then back off as usual.
const RESTART_WINDOW_MS = 20000;
const SERVICE_RESTART = 1012;
// Failed attempts in a row before asking the other nodes (named in `welcome`) where the session went:
// its node may have died, and the session moved to another within seconds.
const LOCATE_AFTER = 3;
const LOCATE_TIMEOUT_MS = 2000;
const LOCATE_EVERY_MS = 1000;

export class Signalling extends EventTarget {
  #token;
  #ws = null;
  #attempt = 0;
  #stopped = false;
  #timer = null;
  #heardAt = 0;
  #pinger = null;
  #restartUntil = 0;
  #nodes = [];
  #locating = false;

  constructor(token) {
    super();
    this.#token = token;
  }

  get open() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.#stopped = false;
    clearTimeout(this.#timer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.#ws = ws;
    const opening = setTimeout(() => this.#lost(ws), CONNECT_MS);
    ws.addEventListener("open", () => {
      clearTimeout(opening);
      this.#heardAt = performance.now();
      ws.send(JSON.stringify({ type: ClientMessage.HELLO, protocol: PROTOCOL_VERSION, token: this.#token }));
    });
    ws.addEventListener("message", (event) => {
      this.#heardAt = performance.now();
      this.#receive(event);
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(opening);
      if (event.code === SERVICE_RESTART && this.#ws === ws) this.#restarted();
      this.#lost(ws);
    });
    clearInterval(this.#pinger);
    this.#pinger = setInterval(() => {
      if (this.#ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      if (performance.now() - this.#heardAt > SILENCE_MS) this.#lost(ws);
      else ws.send(JSON.stringify({ type: ClientMessage.PING }));
    }, PING_MS);
  }

  // The network is back (the phone changed networks, or came out of a tunnel): don't wait for the
  // backoff, and don't trust a socket that may have died meanwhile.
  reconnectNow() {
    if (this.#stopped) return;
    this.#attempt = 0;
    if (this.#ws) this.#lost(this.#ws, 0);
    else this.connect();
  }

  // `ws` is dead or given up on: forget it, and try again after the backoff (or `delay`).
  #lost(ws, delay = null) {
    if (this.#ws !== ws) return;
    this.#ws = null;
    clearInterval(this.#pinger);
    ws.close();
    if (this.#stopped) return;
    let wait = delay;
    if (wait === null && Date.now() < this.#restartUntil) wait = 100 + Math.random() * 150;
    if (wait === null) {
      wait = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
      this.#attempt += 1;
    }
    this.#emit("reconnecting", { delay: wait });
    this.#timer = setTimeout(() => this.connect(), wait);
    if (this.#attempt >= LOCATE_AFTER && this.#nodes.length) this.#locate();
  }

  // Ask the other nodes where the session is now, every LOCATE_EVERY_MS while this one cannot be
  // reached (the session is moved within seconds of its node going silent); go there once it is.
  async #locate() {
    if (this.#locating) return;
    this.#locating = true;
    try {
      while (!this.#stopped && !this.open) {
        for (const node of this.#nodes) {
          const response = await fetch(`${node}/where/${this.#token}`, {
            cache: "no-store",
            signal: AbortSignal.timeout(LOCATE_TIMEOUT_MS),
          }).catch(() => null);
          const found = response?.ok ? (await response.json().catch(() => ({}))).url : null;
          if (found && new URL(found).origin !== location.origin) {
            this.#moveTo(found);
            return;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, LOCATE_EVERY_MS));
      }
    } finally {
      this.#locating = false;
    }
  }

  // The same link on the node that carries the session now; `#resume` says the person already
  // agreed to share, so the page carries on without asking again.
  #moveTo(base) {
    this.stop();
    this.#emit("moved", { url: base });
    location.replace(`${new URL(base).origin}${location.pathname}${location.search}#resume`);
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
    clearInterval(this.#pinger);
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
      this.#nodes = message.nodes ?? [];
    }
    if (message.type === ServerMessage.MOVED) {
      this.#moveTo(message.url);
      return;
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
