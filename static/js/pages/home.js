// Home: the sessions waiting, live and ended today, kept current by the server's event stream
// (/home/events sends the whole board at once and again whenever something is recorded).
import { localTimes, since } from "../components/times.js";

const $ = (id) => document.getElementById(id);
const csrf = document.querySelector("[data-testid=board]").dataset.csrf;
let board = null;

function cell(row, content, className = "") {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  row.append(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function ticket(session) {
  const wrap = document.createElement("span");
  wrap.append(link(session.record_url, session.ticket_id));
  if (session.mine) {
    const mine = document.createElement("span");
    mine.className = "pill";
    mine.textContent = "mine";
    wrap.append(" ", mine);
  }
  return wrap;
}

function duration(seconds) {
  if (seconds == null) return "";
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function watchForm(session) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = `/sessions/${session.id}/watch`;
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrf";
  token.value = csrf;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Join silently";
  button.setAttribute("aria-label", `Join ${session.ticket_id} silently`);
  form.append(token, button);
  return form;
}

function fill(id, sessions, columns, empty) {
  const body = $(id);
  body.replaceChildren();
  $(`${id}-count`).textContent = String(sessions.length);
  if (!sessions.length) {
    const row = body.insertRow();
    const td = cell(row, empty, "empty");
    td.colSpan = 6;
    return;
  }
  for (const session of sessions) {
    const row = body.insertRow();
    row.dataset.sessionId = session.id;
    row.dataset.ticket = session.ticket_id;
    columns(row, session);
  }
}

function people(session) {
  const list = document.createElement("span");
  list.textContent = session.people.length
    ? session.people.map((p) => `${p.name} (${p.role})${p.since ? `, ${since(p.since)}` : ""}`).join("; ")
    : "nobody connected";
  return list;
}

// A cell that counts on by itself ("4 min"), so the rows are only rebuilt when something happened
// (rebuilding would take the keyboard focus off a Join silently button).
function ticking(td, from) {
  td.dataset.since = from;
  td.textContent = since(from);
}

function render() {
  if (!board) return;
  // Rows are rebuilt on every change: keep the keyboard focus on the same control of the same session.
  const focused = document.activeElement;
  const focusRow = focused?.closest("tr[data-session-id]")?.dataset.sessionId;
  const focusLabel = focused?.getAttribute("aria-label") ?? focused?.textContent;
  fill("live", board.live, (row, s) => {
    cell(row, ticket(s));
    cell(row, s.customer);
    cell(row, `Tier ${s.tier}`);
    cell(row, people(s));
    ticking(cell(row, "", "num"), s.started_at ?? s.created_at);
    cell(row, s.can_watch ? watchForm(s) : "");
  }, "No live sessions.");
  fill("waiting", board.waiting, (row, s) => {
    cell(row, ticket(s));
    cell(row, s.customer);
    cell(row, `Tier ${s.tier}`);
    cell(row, s.agent ?? (s.people.length ? people(s) : "not opened yet"));
    ticking(cell(row, "", "num waiting-for"), s.created_at);
    cell(row, link(s.link_url, "Customer link"));
  }, "Nobody is waiting.");
  fill("ended", board.ended, (row, s) => {
    cell(row, ticket(s));
    cell(row, s.customer);
    cell(row, s.agent ?? "");
    cell(row, s.outcome ? s.outcome.replace("_", " ") : s.status);
    cell(row, duration(s.duration_seconds), "num");
    cell(row, s.rating ? `${"★".repeat(s.rating)}${"☆".repeat(5 - s.rating)}` : "not rated")
      .setAttribute("aria-label", s.rating ? `${s.rating} out of 5` : "not rated");
  }, "No sessions ended today yet.");
  localTimes();
  if (focusRow) {
    const again = [...document.querySelectorAll(`tr[data-session-id="${focusRow}"] a, tr[data-session-id="${focusRow}"] button`)]
      .find((el) => (el.getAttribute("aria-label") ?? el.textContent) === focusLabel);
    again?.focus();
  }
}

const stream = new EventSource("/home/events");
stream.addEventListener("message", (event) => {
  board = JSON.parse(event.data);
  $("feed-state").textContent = "Live: updates as they happen";
  render();
});
stream.addEventListener("error", () => {
  $("feed-state").textContent = "Reconnecting…";
});
// The "waiting for" and "live for" columns count on between updates.
setInterval(() => {
  for (const td of document.querySelectorAll("td[data-since]")) td.textContent = since(td.dataset.since);
}, 5000);
