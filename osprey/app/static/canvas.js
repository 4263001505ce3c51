// The canvas page: SAM's prompt encoder + mask decoder run here (onnxruntime-web), on the image
// embedding fetched once per image. Clicks, negative clicks, boxes, refinement, SAM's three
// candidates, picks among the "segment everything" masks and the hover preview cost no request.
// The server side is osprey/app/canvas_page.py (what is sent here, and how the clicks are replayed at full
// resolution when a region is added); the component is osprey/app/canvas_component.py.
//
// Gradio runs this file as the body of `js_on_load`, with `element` (this component's root),
// `trigger(event, data)` (the 'decode' event: the server decodes when this page cannot), `props`
// (`props.value` is the server's view; this page adds its prompt under `page`) and `watch`.
//
// The click semantics mirror osprey/app/mask_prompts.py (MaskPrompts.click) exactly, so that replaying
// the clicks on the server gives the mask shown here: a positive / negative click adds a point
// and refines the previous prediction's best low-res logits once there is more than one point; in
// box mode two clicks make a box; a pick selects the smallest "everything" mask under the click.

const root = element.closest("#canvas") || element; // carries data-mask-version (tests wait on it)
const $ = (sel) => element.querySelector(sel);
const img = $(".osc-base");
const overlay = $(".osc-overlay");
const statusLine = $(".osc-status");
const thumbs = $(".osc-thumbs");
const frame = $(".osc");
const ctx = overlay.getContext("2d");
const abs = (url) => new URL(url, document.baseURI).href;
const vendor = () => abs(props.static_url + "/vendor/onnxruntime-web/");
const GOLD = [255, 215, 0];

// ------------------------------------------------------------------------------------------
// state

const S = {
  payload: null, image: null, promptKey: null, autoUrl: null, auto: null,
  prompt: emptyPrompt(), hover: null, kbd: null,
  engine: null, engineKey: null, emb: null, embKey: null,
  maskVersion: 0, hoverVersion: 0, lock: Promise.resolve(), hoverBusy: false, hoverNext: null,
  pending: new Map(), ask: 0, notice: "",
};

function emptyPrompt() {
  return { clicks: [], points: [], box: null, corner: null, pred: null, candidate: 0, message: "" };
}

function say(text) { statusLine.textContent = text || S.notice; }

function bump(kind) {
  if (kind === "hover") {
    S.hoverVersion += 1;
    root.dataset.hoverVersion = element.dataset.hoverVersion = String(S.hoverVersion);
  } else {
    S.maskVersion += 1;
    root.dataset.maskVersion = element.dataset.maskVersion = String(S.maskVersion);
  }
}

function mode() {
  const checked = document.querySelector("#mode input:checked");
  const m = checked ? checked.value : "positive";
  return m.startsWith("pick") ? "pick" : m;
}

// ------------------------------------------------------------------------------------------
// geometry: the one place client coordinates become image pixels

function toImage(evt) {
  const r = overlay.getBoundingClientRect();
  const { width: W, height: H } = S.image;
  const x = Math.floor(((evt.clientX - r.left) / r.width) * W);
  const y = Math.floor(((evt.clientY - r.top) / r.height) * H);
  return [Math.min(W - 1, Math.max(0, x)), Math.min(H - 1, Math.max(0, y))];
}

function toShown(x, y) {
  const [w, h] = S.image.shown;
  return [((x + 0.5) * w) / S.image.width, ((y + 0.5) * h) / S.image.height];
}

// ------------------------------------------------------------------------------------------
// engines: the decoder in this page (ONNX), or the server (fallback)

function halfToFloat(half) {
  const out = new Float32Array(half.length);
  const pow = new Float32Array(32).map((_, e) => Math.pow(2, e - 15));
  for (let i = 0; i < half.length; i++) {
    const h = half[i], e = (h >> 10) & 31, f = h & 1023, sign = h & 0x8000 ? -1 : 1;
    if (e === 0) out[i] = sign * f * 5.960464477539063e-8;
    else if (e === 31) out[i] = f ? NaN : sign * Infinity;
    else out[i] = sign * (1 + f / 1024) * pow[e];
  }
  return out;
}

function exclusive(task) {
  const run = S.lock.then(task, task);
  S.lock = run.catch(() => {});
  return run;
}

class PageEngine {
  // kind "sam2": SAM 2's maps and prompt inputs come from sam2_decoder.js
  static async load(decoderUrl, kind) {
    if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
    const ort = await import(vendor() + "ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = vendor();
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    const session = await ort.InferenceSession.create(abs(decoderUrl), { executionProviders: ["wasm"] });
    const layout = kind === "sam2" ? await import(abs(props.static_url + "/sam2_decoder.js")) : null;
    return new PageEngine(ort, session, layout);
  }

  constructor(ort, session, layout) {
    this.kind = "page";
    this.ort = ort;
    this.session = session;
    this.layout = layout;
    this.zeros = new ort.Tensor("float32", new Float32Array(256 * 256), [1, 1, 256, 256]);
  }

  async embed(image) {
    if (this.layout) return this.layout.embed(this.ort, image, abs(image.embedding), halfToFloat);
    const buf = await (await fetch(abs(image.embedding))).arrayBuffer();
    const [gh, gw] = image.grid;
    return new this.ort.Tensor("float32", halfToFloat(new Uint16Array(buf)), [1, image.channels, gh, gw]);
  }

  // the ONNX inputs, as tests/support/page_decoder.py `feeds` builds them
  feeds(p, previous) {
    if (this.layout) return this.layout.feeds(this.ort, S.image, S.emb, p, previous, this.zeros);
    const T = this.ort.Tensor, im = S.image;
    const sx = im.input[1] / im.width, sy = im.input[0] / im.height;
    const coords = [], labels = [];
    for (const [x, y, lab] of p.points) { coords.push(x * sx, y * sy); labels.push(lab); }
    if (p.box) {
      const [x0, y0, x1, y1] = p.box;
      coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
      labels.push(2, 3);
    } else { coords.push(0, 0); labels.push(-1); }
    const n = labels.length;
    return {
      image_embeddings: S.emb,
      point_coords: new T("float32", Float32Array.from(coords), [1, n, 2]),
      point_labels: new T("float32", Float32Array.from(labels), [1, n]),
      mask_input: previous ? new T("float32", previous, [1, 1, 256, 256]) : this.zeros,
      has_mask_input: new T("float32", Float32Array.of(previous ? 1 : 0), [1]),
      orig_im_size: new T("float32", Float32Array.of(im.shown[1], im.shown[0]), [2]),
    };
  }

  async decode(p, previous) {
    const multimask = p.points.length === 1 && !p.box && !previous;
    const out = await exclusive(() => this.session.run(this.feeds(p, previous)));
    const [w, h] = S.image.shown, size = w * h;
    const logits = out.masks.data, scores = out.iou_predictions.data, low = out.low_res_masks.data;
    const picks = multimask ? [1, 2, 3] : [0];
    const cands = picks.map((k) => {
      const mask = new Uint8Array(size);
      let area = 0;
      for (let i = 0, o = k * size; i < size; i++) if (logits[o + i] > 0) { mask[i] = 1; area++; }
      return { mask, area, score: scores[k], low: low.slice(k * 65536, (k + 1) * 65536) };
    });
    return finish(cands);
  }
}

class ServerEngine {
  constructor() { this.kind = "server"; }

  async decode(p) {
    const id = ++S.ask;
    const answer = new Promise((resolve) => S.pending.set(id, resolve));
    trigger("decode", { clicks: p.clicks, id });
    const preview = await answer;
    if (preview.error) throw new Error(preview.error);
    if (!preview.masks) return finish([]);
    const planes = await pixels(abs(preview.masks));
    const cands = preview.scores.map((score, k) => {
      const mask = new Uint8Array(planes.length);
      let area = 0;
      for (let i = 0; i < planes.length; i++) if ((planes[i] >> k) & 1) { mask[i] = 1; area++; }
      return { mask, area, score, low: null };
    });
    return finish(cands);
  }
}

// candidates sorted by score; the best non-empty one's low-res logits are refined next
function finish(cands) {
  cands.sort((a, b) => b.score - a.score);
  const best = cands.find((c) => c.area > 0);
  return { cands, low: best ? best.low : null, empty: !best };
}

// a grayscale PNG's pixel values
async function pixels(url) {
  const im = new Image();
  im.src = url;
  await im.decode();
  const c = document.createElement("canvas");
  c.width = im.naturalWidth; c.height = im.naturalHeight;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(im, 0, 0);
  const data = g.getImageData(0, 0, c.width, c.height).data;
  const out = new Uint8Array(c.width * c.height);
  for (let i = 0; i < out.length; i++) out[i] = data[4 * i];
  return out;
}

async function startEngine(p) {
  const wanted = new URLSearchParams(location.search).get("decoder");
  if (S.engine && S.engineKey === p.decoder) return;
  S.engineKey = p.decoder;
  try {
    if (wanted === "server") throw new Error("?decoder=server asks for the server");
    if (!p.decoder) throw new Error("the server offers no decoder");
    S.engine = await PageEngine.load(p.decoder, p.decoder_kind);
    S.notice = "Masks are decoded in this page: clicks and hover need no round trip.";
  } catch (err) {
    S.engine = new ServerEngine();
    S.notice = `The in-page decoder is not available (${err.message || err}); clicks are decoded on the server.`;
  }
  root.dataset.decoder = S.engine.kind;
  root.dataset.threads = S.engine.kind === "page" ? String(S.engine.ort.env.wasm.numThreads) : "0";
  say();
}

// ------------------------------------------------------------------------------------------
// prompts (mirror of MaskPrompts.click; see osprey/app/mask_prompts.py)

class UserMessage extends Error {}

// COCO's compressed RLE counts (5 bits per character, offset 48, continuation bit 0x20, sign
// bit 0x10, each count after the second stored as a difference from the one two back)
function rleCounts(text) {
  const counts = [];
  for (let p = 0; p < text.length;) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p++) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// a column-major RLE (COCO) of an h x w mask -> row-major Uint8Array
function rleMask(text, h, w) {
  const mask = new Uint8Array(h * w);
  let i = 0, value = 0;
  for (const n of rleCounts(text)) {
    if (value) for (let j = i; j < i + n; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    i += n;
    value ^= 1;
  }
  return mask;
}

async function loadAuto(url) {
  const data = await (await fetch(url)).json();
  const [h, w] = data.size;
  return data.masks
    .map((m) => ({ mask: rleMask(m.counts, h, w), area: m.area }))
    .sort((a, b) => a.area - b.area); // smallest first, as the server picks
}

function autoAt(x, y) {
  if (!S.auto) return null;
  const [sx, sy] = toShown(x, y), [w] = S.image.shown;
  const i = Math.floor(sy) * w + Math.floor(sx);
  return S.auto.find((m) => m.mask[i]) || null;
}

function autoMask(found) {
  let area = 0;
  for (let i = 0; i < found.mask.length; i++) area += found.mask[i];
  return { cands: [{ mask: found.mask, area, score: 1, low: null }], low: null, empty: false };
}

async function step(p, x, y, m) {
  const n = { ...p, points: p.points.slice(), clicks: p.clicks.concat([[x, y, m]]), message: "" };
  if (m === "pick") {
    const found = autoAt(x, y);
    if (!found) throw new UserMessage(S.auto ? "No mask under this click." : "Run 'Segment everything' first.");
    return { ...n, pred: autoMask(found), candidate: 0 };
  }
  if (m === "box") {
    if (!n.corner) return { ...n, corner: [x, y], message: "Now click the opposite corner of the box." };
    const [x0, y0] = n.corner;
    n.corner = null;
    if (Math.abs(x - x0) < 2 || Math.abs(y - y0) < 2) {
      const corner = n.clicks.map((c) => c[2]).lastIndexOf("box", n.clicks.length - 2);
      const clicks = n.clicks.slice(0, -1).filter((_, i) => i !== corner); // replayed: never sent
      return { ...n, clicks, message: "The box is too thin: click two opposite corners." };
    }
    n.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
  } else n.points.push([x, y, m === "negative" ? 0 : 1]);
  const previous = n.pred && n.points.length > 1 ? n.pred.low : null;
  n.pred = await S.engine.decode(n, previous);
  n.candidate = 0;
  if (n.pred.empty) n.message = "SAM found no region for this prompt; try another point.";
  return n;
}

async function rebuild(clicks) {
  let p = emptyPrompt();
  for (const [x, y, m] of clicks) p = await step(p, x, y, m);
  return p;
}

// ------------------------------------------------------------------------------------------
// drawing

function maskLayer(mask, rgb, alpha, outline) {
  const [w, h] = S.image.shown;
  const layer = new ImageData(w, h), d = layer.data, a = Math.round(alpha * 255);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const x = i % w, edge = outline && (x === 0 || x === w - 1 || i < w || i >= mask.length - w ||
      !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]);
    const o = 4 * i;
    if (edge) { d[o] = d[o + 1] = d[o + 2] = 255; d[o + 3] = 255; }
    else { d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = a; }
  }
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  c.getContext("2d").putImageData(layer, 0, 0);
  return c;
}

function selected(p) {
  return p.pred && p.pred.cands.length ? p.pred.cands[Math.min(p.candidate, p.pred.cands.length - 1)] : null;
}

function draw() {
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!S.image) return;
  const p = S.prompt, sel = selected(p);
  if (S.hover && S.hover.layer) ctx.drawImage(S.hover.layer, 0, 0);
  if (sel && sel.area) {
    if (!sel.layer) sel.layer = maskLayer(sel.mask, GOLD, 0.45, true);
    ctx.drawImage(sel.layer, 0, 0);
  }
  const r = Math.max(4, Math.min(...S.image.shown) / 100);
  for (const [x, y, lab] of p.points) dot(x, y, lab ? "#28c83c" : "#dc2828", r);
  if (p.corner) dot(p.corner[0], p.corner[1], "#28c83c", r);
  if (p.box) {
    const [x0, y0] = toShown(p.box[0], p.box[1]), [x1, y1] = toShown(p.box[2], p.box[3]);
    ctx.strokeStyle = "rgb(255,215,0)"; ctx.lineWidth = 2; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (S.kbd && document.activeElement === overlay) {
    const [x, y] = toShown(...S.kbd);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x - 10, y); ctx.lineTo(x + 10, y); ctx.moveTo(x, y - 10); ctx.lineTo(x, y + 10); ctx.stroke();
  }
}

function dot(x, y, fill, r) {
  const [sx, sy] = toShown(x, y);
  ctx.beginPath(); ctx.arc(sx, sy, r + 2, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
  ctx.beginPath(); ctx.arc(sx, sy, r, 0, 2 * Math.PI); ctx.fillStyle = fill; ctx.fill();
}

function drawThumbs() {
  thumbs.replaceChildren();
  const p = S.prompt;
  if (!p.pred || p.pred.cands.length < 2) return;
  const [w, h] = S.image.shown, tw = Math.round((96 * w) / h);
  p.pred.cands.forEach((c, k) => {
    const b = document.createElement("button");
    b.className = "osc-thumb" + (k === p.candidate ? " osc-chosen" : "");
    b.title = `candidate ${k + 1} (score ${c.score.toFixed(2)})`;
    const t = document.createElement("canvas");
    t.width = tw; t.height = 96;
    const g = t.getContext("2d");
    g.drawImage(img, 0, 0, tw, 96);
    if (!c.layer) c.layer = maskLayer(c.mask, GOLD, 0.45, true);
    g.drawImage(c.layer, 0, 0, tw, 96);
    const label = document.createElement("span");
    label.textContent = c.score.toFixed(2);
    b.append(t, label);
    b.addEventListener("click", () => choose(k));
    thumbs.append(b);
  });
}

// a new selection (click, pick, candidate, undo): redraw, count it, tell the server on 'add'
function commit(p) {
  S.prompt = p;
  S.hover = null;
  say(p.message);
  draw();
  drawThumbs();
  bump("mask");
  writeBack();
}

function choose(k) {
  if (!S.prompt.pred || k >= S.prompt.pred.cands.length) return;
  commit({ ...S.prompt, candidate: k, message: "" });
}

// the page's prompt travels in props.value.page: the server replays it when a region is added
function writeBack() {
  const page = { clicks: S.prompt.clicks, candidate: S.prompt.candidate };
  props.value = { ...(S.payload || {}), page };
}

// ------------------------------------------------------------------------------------------
// events

// clicks run one after the other, each on the prompt the previous one left
function click(x, y) {
  const m = mode();
  S.clickChain = (S.clickChain || Promise.resolve()).then(() => clickNow(x, y, m));
  return S.clickChain;
}

async function clickNow(x, y, m) {
  if (!S.image || !S.engine || (S.engine.kind === "page" && !S.emb)) return;
  const h = S.hover, base = S.prompt;
  try {
    const reuse = h && h.x === x && h.y === y && h.mode === m && h.base === base && h.prompt;
    const p = reuse ? h.prompt : await step(base, x, y, m);
    if (S.prompt !== base) return; // the server started a new prompt meanwhile
    commit(p);
  } catch (err) {
    say(err instanceof UserMessage ? err.message : `Error: ${err.message || err}`);
  }
}

async function hover(x, y) {
  if (!S.image || !S.engine || S.engine.kind !== "page" || !S.emb) return;
  const m = mode();
  if (m === "box" && !S.prompt.corner) return;
  if (S.hoverBusy) { S.hoverNext = [x, y]; return; }
  S.hoverBusy = true;
  try {
    const base = S.prompt;
    let p = null;
    try { p = await step(base, x, y, m); } catch { p = null; }
    const c = p ? selected(p) : null;
    if (S.prompt === base) {
      S.hover = { x, y, mode: m, base, prompt: p, layer: c && c.area ? maskLayer(c.mask, GOLD, 0.22, false) : null };
      draw();
      bump("hover");
    }
  } finally {
    S.hoverBusy = false;
    const next = S.hoverNext;
    S.hoverNext = null;
    if (next) hover(...next);
  }
}

async function undoClick() {
  if (!S.prompt.clicks.length) return;
  try { commit(await rebuild(S.prompt.clicks.slice(0, -1))); } catch (err) { say(`Error: ${err.message || err}`); }
}

overlay.addEventListener("pointermove", (e) => { if (S.image) hover(...toImage(e)); });
overlay.addEventListener("pointerleave", () => { S.hover = null; draw(); });
overlay.addEventListener("click", (e) => { if (S.image) click(...toImage(e)); });
overlay.addEventListener("keydown", (e) => {
  if (!S.image) return;
  const stepPx = Math.max(1, Math.round(S.image.width / (e.shiftKey ? 10 : 50)));
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  S.kbd = S.kbd || [Math.floor(S.image.width / 2), Math.floor(S.image.height / 2)];
  if (moves[e.key]) {
    const [dx, dy] = moves[e.key];
    S.kbd = [Math.min(S.image.width - 1, Math.max(0, S.kbd[0] + dx * stepPx)), Math.min(S.image.height - 1, Math.max(0, S.kbd[1] + dy * stepPx))];
    hover(...S.kbd);
  } else if (e.key === "Enter" || e.key === " ") click(...S.kbd);
  else if (e.key === "Backspace" || (e.key === "z" && (e.ctrlKey || e.metaKey))) undoClick();
  else if (e.key === "Escape") commit(emptyPrompt());
  else return;
  e.preventDefault();
  draw();
});
overlay.addEventListener("focus", draw);
overlay.addEventListener("blur", draw);

// ------------------------------------------------------------------------------------------
// the server's view

async function onPayload(p) {
  if (!p) return;
  S.payload = p;
  const preview = p.preview;
  if (preview && S.pending.has(preview.id)) {
    S.pending.get(preview.id)(preview);
    S.pending.delete(preview.id);
  }
  if (!p.image) {
    S.image = null; S.prompt = emptyPrompt(); frame.classList.add("osc-empty");
    img.removeAttribute("src"); draw(); drawThumbs(); writeBack();
    return;
  }
  frame.classList.remove("osc-empty");
  const fresh = !S.image || S.image.key !== p.image.key;
  S.image = p.image;
  if (fresh) { overlay.width = p.image.shown[0]; overlay.height = p.image.shown[1]; S.emb = null; S.kbd = null; }
  if (p.prompt !== S.promptKey) { // the server started a new prompt (upload, add, clear)
    const had = S.prompt.clicks.length > 0;
    S.promptKey = p.prompt; S.prompt = emptyPrompt(); S.hover = null; drawThumbs();
    if (had) { draw(); bump("mask"); }
  }
  writeBack();
  if (abs(p.image.base) !== img.src) {
    img.src = abs(p.image.base);
    await img.decode().catch(() => {});
    bump("mask");
  }
  if (p.auto !== S.autoUrl) {
    S.autoUrl = p.auto;
    S.auto = p.auto ? await loadAuto(abs(p.auto)) : null;
  }
  draw();
  await startEngine(p);
  if (S.engine.kind === "page" && S.embKey !== p.image.key) {
    S.embKey = p.image.key;
    try { S.emb = await S.engine.embed(p.image); } catch (err) {
      S.engine = new ServerEngine(); root.dataset.decoder = "server";
      S.notice = `The image embedding could not be loaded (${err.message || err}); clicks are decoded on the server.`;
      say();
    }
  }
  root.dataset.ready = p.image.key;
}

watch("value", () => onPayload(props.value));
onPayload(props.value);

// test and benchmark hook: the selected mask at display size as run lengths (row-major, from 0)
window.ospreyCanvas = {
  maskRuns() {
    const c = selected(S.prompt);
    if (!c) return [];
    const runs = [];
    let v = 0, n = 0;
    for (let i = 0; i < c.mask.length; i++) {
      if (c.mask[i] !== v) { runs.push(n); v = c.mask[i]; n = 0; }
      n++;
    }
    runs.push(n);
    return runs;
  },
  prompt: () => ({ clicks: S.prompt.clicks, candidate: S.prompt.candidate, candidates: S.prompt.pred ? S.prompt.pred.cands.length : 0 }),
  shown: () => (S.image ? S.image.shown : null),
};
