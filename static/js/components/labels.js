// Reading labels in the agent console: chips for the values read off each snapshot (confirm, correct,
// dismiss), and "Read label" on the picture now, with where the text is and an optional region to read.
// Self-contained: it listens to the socket and finds its places in the page by id.
import { ClientMessage, ServerMessage } from "../lib/protocol.js";

const NAMES = {
  serial_number: "S/N", model: "Model", mac_address: "MAC", imei: "IMEI",
  ean: "EAN", upc: "UPC", qr: "QR:", data_matrix: "Data Matrix:", code: "Code:",
};
const label = (field) => `${NAMES[field.name] ?? field.name.replace(/_/g, " ")} ${field.value}`;
const percent = (confidence) => `${Math.round(confidence * 100)}%`;

export class Labels {
  constructor(signalling, { leads }) {
    this.signalling = signalling;
    this.leads = leads;
    this.fields = new Map(); // snapshot id -> Map(field id -> field)
    this.list = document.getElementById("snapshot-list");
    this.stage = document.getElementById("stage");
    this.video = document.getElementById("remote-video");
    this.overlay = document.createElement("div");
    this.overlay.className = "read-overlay";
    this.overlay.dataset.testid = "read-overlay";
    this.overlay.hidden = true;
    this.stage.append(this.overlay);
    this.result = document.createElement("p");
    this.result.className = "read-result";
    this.result.dataset.testid = "read-result";
    this.result.setAttribute("role", "status");
    this.result.setAttribute("aria-live", "polite");
    this.stage.append(this.result);
    this.buttons = leads ? this.addButtons() : [];
    signalling.addEventListener(ServerMessage.WELCOME, ({ detail }) => {
      for (const button of this.buttons) button.hidden = !detail.reading; // off on this server
      this.fields.clear();
      for (const field of detail.fields ?? []) this.keep(field);
      this.renderAll();
    });
    signalling.addEventListener(ServerMessage.SNAPSHOT_READ, ({ detail }) => {
      for (const field of detail.fields) this.keep(field);
      this.render(detail.snapshot_id, detail.error);
    });
    signalling.addEventListener(ServerMessage.FIELD, ({ detail }) => {
      this.keep(detail.field);
      this.render(detail.field.snapshot_id);
    });
    signalling.addEventListener(ServerMessage.READ_RESULT, ({ detail }) => this.showReading(detail));
    signalling.addEventListener(ServerMessage.ERROR, ({ detail }) => {
      if (detail.ref && detail.ref.startsWith("read-")) this.result.textContent = `Could not read: ${detail.message}`;
    });
    // The snapshot list redraws an entry when it is drawn on again: put its chips back.
    new MutationObserver(() => this.renderAll()).observe(this.list, { childList: true, subtree: false });
  }

  keep(field) {
    if (!this.fields.has(field.snapshot_id)) this.fields.set(field.snapshot_id, new Map());
    this.fields.get(field.snapshot_id).set(field.id, field);
  }

  renderAll() {
    for (const id of this.fields.keys()) this.render(id);
  }

  render(snapshotId, error = null) {
    const li = this.list.querySelector(`[data-snapshot-id="${snapshotId}"]`);
    if (!li) return;
    let box = li.querySelector(".chips");
    if (!box) {
      box = document.createElement("ul");
      box.className = "chips";
      box.dataset.testid = "chips";
      box.setAttribute("aria-label", "Read off this snapshot");
      li.append(box);
    }
    const fields = [...(this.fields.get(snapshotId)?.values() ?? [])].filter((f) => f.status !== "rejected");
    box.replaceChildren(...fields.map((field) => this.chip(field)));
    if (error) {
      const note = document.createElement("li");
      note.textContent = `Not read (${error})`;
      box.append(note);
    }
  }

  chip(field) {
    const li = document.createElement("li");
    li.className = `chip chip-${field.status}`;
    li.dataset.testid = "chip";
    li.dataset.fieldId = field.id;
    li.dataset.status = field.status;
    const text = document.createElement("span");
    text.textContent = label(field);
    text.title = `${field.source === "text" ? "Read from the text" : field.source}, confidence ${percent(field.confidence)}`;
    const confidence = document.createElement("small");
    confidence.textContent = field.status === "confirmed" ? "✓ confirmed" : percent(field.confidence);
    li.append(text, " ", confidence);
    if (this.leads && field.status === "suggested") {
      li.append(this.button("Confirm", `Confirm ${label(field)}`, "chip-confirm",
        () => this.send({ type: ClientMessage.FIELD_CONFIRM, field_id: field.id })));
      li.append(this.button("Correct", `Correct ${label(field)}`, "chip-correct", () => this.correct(li, field)));
      li.append(this.button("✕", `Dismiss ${label(field)}`, "chip-reject",
        () => this.send({ type: ClientMessage.FIELD_REJECT, field_id: field.id })));
    }
    return li;
  }

  // The chip becomes a small form: the value read, to put right, then Save (Enter) or Cancel (Escape).
  correct(li, field) {
    const form = document.createElement("form");
    form.className = "chip-form";
    const id = `correct-${field.id}`;
    const caption = document.createElement("label");
    caption.htmlFor = id;
    caption.textContent = NAMES[field.name] ?? field.name.replace(/_/g, " ");
    const input = document.createElement("input");
    input.id = id;
    input.value = field.value;
    input.maxLength = 200;
    input.required = true;
    input.dataset.testid = "chip-value";
    const cancel = () => this.render(field.snapshot_id);
    form.append(caption, input, this.button("Save", `Save the corrected ${caption.textContent}`, "chip-save", () => form.requestSubmit()),
      this.button("Cancel", "Cancel the correction", "chip-cancel", cancel));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) this.send({ type: ClientMessage.FIELD_CONFIRM, field_id: field.id, value });
    });
    input.addEventListener("keydown", (event) => { if (event.key === "Escape") cancel(); });
    li.replaceChildren(form);
    input.focus();
    input.select();
  }

  button(text, name, testid, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.setAttribute("aria-label", name);
    button.dataset.testid = testid;
    button.addEventListener("click", onClick);
    return button;
  }

  send(message) {
    this.signalling.send(message);
  }

  addButtons() {
    const group = document.getElementById("snapshot").parentElement;
    const read = this.button("Read label", "Read the label now", "read-label", () => this.read(null));
    read.title = "Read the text and codes in the picture now (the held one while frozen)";
    const region = this.button("Read region", "Drag a box over the picture to read only that part", "read-region",
      () => this.pickRegion());
    read.hidden = region.hidden = true; // until the server says it reads labels
    group.prepend(read, region);
    return [read, region];
  }

  read(region) {
    this.result.textContent = "Reading…";
    this.send({ type: ClientMessage.READ, request_id: `read-${Date.now()}`, ...(region ? { region } : {}) });
  }

  // The picture's place inside the video element (object-fit: contain leaves bars around it).
  pictureRect() {
    const rect = this.video.getBoundingClientRect();
    const stage = this.stage.getBoundingClientRect();
    const w = this.video.videoWidth || 16, h = this.video.videoHeight || 9;
    const scale = Math.min(rect.width / w, rect.height / h);
    const width = w * scale, height = h * scale;
    return { left: rect.left - stage.left + (rect.width - width) / 2, top: rect.top - stage.top + (rect.height - height) / 2, width, height };
  }

  pickRegion() {
    const picture = this.pictureRect();
    this.overlay.replaceChildren();
    this.overlay.hidden = false;
    this.overlay.classList.add("picking");
    this.result.textContent = "Drag a box over the part of the picture to read (Escape to cancel).";
    const box = document.createElement("div");
    box.className = "read-box";
    let start = null;
    const norm = (event) => {
      const stage = this.stage.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (event.clientX - stage.left - picture.left) / picture.width)),
        Math.min(1, Math.max(0, (event.clientY - stage.top - picture.top) / picture.height))];
    };
    const place = (a, b) => this.placeBox(box, [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])], picture);
    const done = () => {
      this.overlay.classList.remove("picking");
      this.overlay.onpointerdown = this.overlay.onpointermove = this.overlay.onpointerup = null;
      document.removeEventListener("keydown", escape);
    };
    const escape = (event) => { if (event.key === "Escape") { done(); this.overlay.hidden = true; this.result.textContent = ""; } };
    document.addEventListener("keydown", escape);
    this.overlay.onpointerdown = (event) => {
      this.overlay.setPointerCapture(event.pointerId); // a release outside the picture still ends the drag
      start = norm(event);
      this.overlay.append(box);
      place(start, start);
    };
    this.overlay.onpointermove = (event) => { if (start) place(start, norm(event)); };
    this.overlay.onpointerup = (event) => {
      if (!start) return;
      const end = norm(event);
      const region = [Math.min(start[0], end[0]), Math.min(start[1], end[1]), Math.max(start[0], end[0]), Math.max(start[1], end[1])];
      done();
      if (region[2] - region[0] < 0.02 || region[3] - region[1] < 0.02) { this.overlay.hidden = true; this.result.textContent = ""; return; }
      this.read(region.map((v) => Math.round(v * 1000) / 1000));
    };
  }

  placeBox(element, [x0, y0, x1, y1], picture) {
    element.style.left = `${picture.left + x0 * picture.width}px`;
    element.style.top = `${picture.top + y0 * picture.height}px`;
    element.style.width = `${(x1 - x0) * picture.width}px`;
    element.style.height = `${(y1 - y0) * picture.height}px`;
  }

  showReading(reading) {
    const picture = this.pictureRect();
    this.overlay.replaceChildren();
    this.overlay.hidden = false;
    if (reading.region) {
      const region = document.createElement("div");
      region.className = "read-box";
      this.placeBox(region, reading.region, picture);
      this.overlay.append(region);
    }
    for (const line of reading.lines) {
      const mark = document.createElement("div");
      mark.className = "read-line";
      mark.dataset.testid = "read-line";
      mark.title = `${line.text} (${percent(line.confidence)})`;
      this.placeBox(mark, line.box, picture);
      this.overlay.append(mark);
    }
    const found = reading.found.map((f) => `${label(f)} (${percent(f.confidence)})`);
    const text = reading.lines.map((l) => l.text).join(" · ");
    this.result.textContent = found.length ? `Found: ${found.join(", ")}` : text ? `Text: ${text}` : "No text or code found.";
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => { this.overlay.hidden = true; }, 15000);
  }
}
