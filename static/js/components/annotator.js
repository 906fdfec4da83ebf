// Drawing on the live picture. Shapes are kept as vector data in normalized 0..1 coordinates of the
// video frame, the same JSON the server validates and composes (visassist/annotations.py,
// visassist/media/compose.py); the drawing formulas below match the server's.

const ARROW_HEAD_PER_WIDTH = 4.0;
const TEXT_HEIGHT_PER_WIDTH = 5.0;
const MIN_DRAG = 0.01; // a click, not a drag: no shape
export const TOOLS = Object.freeze(["arrow", "rect", "ellipse", "freehand", "text"]);

const clamp = (v) => Math.min(1, Math.max(0, v));
const round4 = (v) => Math.round(v * 10000) / 10000;
const roundShape = (s) => ({ ...s, points: s.points.map(([x, y]) => [round4(x), round4(y)]) });

// Lay `canvas` exactly over the picture inside `media` (a <video> or <img>; object-fit: contain
// letterboxes), so normalized canvas coordinates are normalized frame coordinates.
function fitToMedia(canvas, media) {
  const box = media.getBoundingClientRect();
  const parent = canvas.offsetParent?.getBoundingClientRect() ?? box;
  const vw = media.videoWidth || media.naturalWidth || 16;
  const vh = media.videoHeight || media.naturalHeight || 9;
  const scale = Math.min(box.width / vw, box.height / vh) || 1;
  const w = vw * scale;
  const h = vh * scale;
  const style = canvas.style;
  style.left = `${box.left - parent.left + (box.width - w) / 2}px`;
  style.top = `${box.top - parent.top + (box.height - h) / 2}px`;
  style.width = `${w}px`;
  style.height = `${h}px`;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(w * dpr));
  canvas.height = Math.max(1, Math.round(h * dpr));
}

// A canvas kept over a picture, fitted again (and redrawn) whenever the picture or the window
// changes size. It can move to another picture (a stored photo, and back); each is watched once.
class CanvasOverMedia {
  #watched = new WeakSet();

  constructor(canvas, media, redraw) {
    this.canvas = canvas;
    this.redraw = redraw;
    window.addEventListener("resize", () => this.layout());
    this.retarget(media);
  }

  retarget(media) {
    this.media = media;
    if (!this.#watched.has(media)) {
      this.#watched.add(media);
      new ResizeObserver(() => this.layout()).observe(media);
      for (const event of ["resize", "loadedmetadata", "load"]) media.addEventListener(event, () => this.layout());
    }
    this.layout();
  }

  layout() {
    fitToMedia(this.canvas, this.media);
    this.redraw();
  }
}

// Someone else's drawing and laser pointers, shown read-only (the customer's overlay; other staff).
export class Overlay {
  #canvas;
  #layers = new Map(); // by participant id -> shapes
  #pointers = new Map(); // by participant id -> [x, y]

  constructor(canvas, media) {
    this.#canvas = canvas;
    new CanvasOverMedia(canvas, media, () => this.draw());
  }

  setShapes(by, shapes) {
    if (shapes.length) this.#layers.set(by, shapes);
    else this.#layers.delete(by);
    this.draw();
  }

  setPointer(by, point) {
    if (point) this.#pointers.set(by, point);
    else this.#pointers.delete(by);
    this.draw();
  }

  shapes() {
    return [...this.#layers.values()].flat();
  }

  draw() {
    const ctx = this.#canvas.getContext("2d");
    const { width, height } = this.#canvas;
    ctx.clearRect(0, 0, width, height);
    for (const shape of this.shapes()) drawShape(ctx, shape, width, height);
    for (const point of this.#pointers.values()) drawPointer(ctx, point, width, height);
  }
}

export function drawPointer(ctx, [x, y], width, height) {
  const r = Math.max(6, Math.min(width, height) * 0.018);
  ctx.save();
  ctx.fillStyle = "rgba(255, 45, 85, 0.9)";
  ctx.shadowColor = "rgba(255, 45, 85, 0.9)";
  ctx.shadowBlur = r;
  ctx.beginPath();
  ctx.arc(x * (width - 1), y * (height - 1), r, 0, 2 * Math.PI);
  ctx.fill();
  ctx.restore();
}

export class Annotator extends EventTarget {
  tool = "arrow"; // or "pointer": a laser dot that leaves no trace
  color = "#ff3b30";
  width = 0.006;
  shapes = [];
  #draft = null;
  #canvas;
  #surface;
  #ctx;
  #textInput = null;

  constructor(canvas, video) {
    super();
    this.#canvas = canvas;
    this.#ctx = canvas.getContext("2d");
    canvas.addEventListener("pointerdown", (e) => this.#down(e));
    canvas.addEventListener("pointermove", (e) => this.#move(e));
    canvas.addEventListener("pointerup", (e) => this.#up(e));
    canvas.addEventListener("pointercancel", () => this.#cancel());
    canvas.addEventListener("pointerleave", () => {
      if (this.tool === "pointer") this.#emit("pointer", null);
    });
    this.#surface = new CanvasOverMedia(canvas, video, () => this.draw());
  }

  // Others' shapes, drawn beneath this annotator's own (another expert's drawing).
  others = new Map();

  // Draw over another picture (a stored photo instead of the live video), or back.
  retarget(media) {
    this.#surface.retarget(media);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // What is on screen now, the stroke being drawn included (mirrored to the customer as it is drawn).
  live() {
    const shapes = this.#draft ? [...this.shapes, this.#draft] : this.shapes;
    return shapes.map(roundShape);
  }

  undo() {
    this.shapes.pop();
    this.#changed();
  }

  clear() {
    this.shapes = [];
    this.#changed();
  }

  // What a snapshot records: this annotator's shapes and those of others in the session.
  toJSON() {
    return [...[...this.others.values()].flat(), ...this.shapes.map(roundShape)];
  }

  #point(event) {
    const r = this.#canvas.getBoundingClientRect();
    return [clamp((event.clientX - r.left) / r.width), clamp((event.clientY - r.top) / r.height)];
  }

  #down(event) {
    if (event.button !== 0) return;
    const p = this.#point(event);
    if (this.tool === "pointer") {
      this.#emit("pointer", p);
      return;
    }
    if (this.tool === "text") {
      event.preventDefault();
      this.#askText(p, event);
      return;
    }
    this.#canvas.setPointerCapture(event.pointerId);
    this.#draft = { kind: this.tool, color: this.color, width: this.width, points: [p, p] };
  }

  #move(event) {
    if (this.tool === "pointer") {
      this.#emit("pointer", this.#point(event));
      return;
    }
    if (!this.#draft) return;
    const p = this.#point(event);
    if (this.#draft.kind === "freehand") {
      const last = this.#draft.points[this.#draft.points.length - 1];
      if (Math.hypot(p[0] - last[0], p[1] - last[1]) > 0.002 && this.#draft.points.length < 2000) {
        this.#draft.points.push(p);
      }
    } else {
      this.#draft.points[1] = p;
    }
    this.draw();
    this.#emit("draw", this.shapes.length);
  }

  #up(event) {
    if (!this.#draft) return;
    this.#move(event);
    const draft = this.#draft;
    this.#draft = null;
    const [a, b] = [draft.points[0], draft.points[draft.points.length - 1]];
    const span = draft.kind === "freehand" ? draft.points.length > 2 : Math.hypot(b[0] - a[0], b[1] - a[1]) >= MIN_DRAG;
    if (span) {
      this.shapes.push(draft);
      this.#changed();
    } else {
      this.draw();
    }
  }

  #cancel() {
    this.#draft = null;
    this.draw();
  }

  #askText(point, event) {
    this.#textInput?.remove();
    const input = document.createElement("input");
    input.type = "text";
    input.maxLength = 200;
    input.className = "annotation-text-input";
    input.setAttribute("aria-label", "Annotation text; Enter to place, Escape to cancel");
    input.dataset.testid = "annotation-text";
    const host = this.#canvas.parentElement;
    const r = host.getBoundingClientRect();
    input.style.left = `${event.clientX - r.left}px`;
    input.style.top = `${event.clientY - r.top}px`;
    host.append(input);
    this.#textInput = input;
    const done = (commit) => {
      const text = input.value.trim();
      input.remove();
      this.#textInput = null;
      if (commit && text) {
        this.shapes.push({ kind: "text", color: this.color, width: this.width, points: [point], text });
        this.#changed();
      }
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") done(true);
      if (e.key === "Escape") done(false);
      e.stopPropagation();
    });
    input.addEventListener("blur", () => done(true));
    setTimeout(() => input.focus(), 0);
  }

  #changed() {
    this.draw();
    this.#emit("change", this.shapes.length);
    this.#emit("draw", this.shapes.length);
  }

  draw() {
    const ctx = this.#ctx;
    const { width, height } = this.#canvas;
    ctx.clearRect(0, 0, width, height);
    for (const shape of [...this.others.values()].flat()) drawShape(ctx, shape, width, height);
    for (const shape of this.#draft ? [...this.shapes, this.#draft] : this.shapes) {
      drawShape(ctx, shape, width, height);
    }
  }
}

export function drawShape(ctx, shape, width, height) {
  const px = ([x, y]) => [x * (width - 1), y * (height - 1)];
  const thickness = Math.max(1, Math.round(shape.width * height));
  ctx.strokeStyle = shape.color;
  ctx.fillStyle = shape.color;
  ctx.lineWidth = thickness;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  if (shape.kind === "arrow") {
    const [t, h] = shape.points.map(px);
    ctx.moveTo(...t);
    ctx.lineTo(...h);
    const angle = Math.atan2(h[1] - t[1], h[0] - t[0]);
    const size = ARROW_HEAD_PER_WIDTH * thickness + 4;
    for (const side of [-1, 1]) {
      const wing = angle + Math.PI + (side * Math.PI) / 6;
      ctx.moveTo(...h);
      ctx.lineTo(h[0] + size * Math.cos(wing), h[1] + size * Math.sin(wing));
    }
  } else if (shape.kind === "rect") {
    const [a, b] = shape.points.map(px);
    ctx.rect(a[0], a[1], b[0] - a[0], b[1] - a[1]);
  } else if (shape.kind === "ellipse") {
    const [a, b] = shape.points.map(px);
    ctx.ellipse((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, Math.abs(b[0] - a[0]) / 2, Math.abs(b[1] - a[1]) / 2, 0, 0, 2 * Math.PI);
  } else if (shape.kind === "freehand") {
    shape.points.map(px).forEach((p, i) => (i === 0 ? ctx.moveTo(...p) : ctx.lineTo(...p)));
  } else if (shape.kind === "text") {
    const size = TEXT_HEIGHT_PER_WIDTH * shape.width * height * 1.4;
    ctx.font = `600 ${Math.max(8, size)}px system-ui, sans-serif`;
    ctx.fillText(shape.text, ...px(shape.points[0]));
    return;
  }
  ctx.stroke();
}
