// The canvas page: the image a user opens (drop, paste, file, example), clicks, drags and zooms,
// with its toolbar, SAM's candidates and the keyboard shortcuts. SAM's decoder runs in
// decoder.js (in this page, or on the server as a fallback); the prompt logic is prompts.js, zoom
// and pan viewport.js, what this browser keeps store.js. The server side is
// osprey/app/canvas_page.py (what is sent here, and how the clicks are replayed at full
// resolution when a region is added); the component is osprey/app/canvas_component.py.
//
// Gradio runs this file as the body of `js_on_load`, with `element` (this component's root),
// `trigger(event, data)`, `upload(file)` (to the server's upload route), `props` (`props.value`
// is the server's view; this page adds its prompt under `page`) and `watch`. The events it
// triggers (Gradio finds them by name in this file): "open_file", "open_example", "restore",
// "decode", "add_region", "everything", "undo_edit", "redo_edit".
//
// Clicks are never lost: while a new photo is prepared (uploaded, encoded by SAM, its embedding
// fetched) the clicks made on it wait, drawn as hollow dots, and run as soon as the page can
// decode. A click never waits behind a hover preview: it takes over the preview in flight when
// both are at the same point, and otherwise skips drawing it.

const root = element.closest("#canvas") || element; // carries data-mask-version (tests wait on it)
const $ = (sel) => element.querySelector(sel);
const frame = $(".osc"), stage = $(".osc-stage"), world = $(".osc-world"), img = $(".osc-base");
const overlay = $(".osc-overlay"), statusLine = $(".osc-status"), progressLine = $(".osc-progress");
const thumbs = $(".osc-thumbs"), fileInput = $(".osc-file"), keys = $(".osc-keys");
const ctx = overlay.getContext("2d");
const abs = (url) => new URL(url, document.baseURI).href;
const moduleUrl = (name) => abs(`${props.static_url}/${name}?v=${props.version}`);
const GOLD = [255, 215, 0];
const MODES = { add: "positive", subtract: "negative", box: "box", pick: "pick" };
const STAGES = {
  upload: "Uploading the photo…", sam: "SAM is reading the photo…", restore: "Restoring what this browser kept…",
  decoder: "Loading the decoder…", embedding: "Fetching SAM's view of the photo…",
};

const S = {
  payload: null, image: null, geom: null, promptKey: null, prompt: null,
  hover: null, hoverTask: null, hoverNext: null, chain: Promise.resolve(), views: Promise.resolve(),
  decoder: null, decoderUrl: undefined, decoderReady: null, emb: null, embKey: null,
  auto: null, autoUrl: null, regions: null, regionsUrl: null, highlight: null,
  tool: "add", kbd: null, versions: { mask: 0, hover: 0 }, pending: new Map(), asks: 0, notice: "",
  preparing: "", answersPending: false, queue: [], source: null, opening: null, previous: null,
  savedJson: "null", drag: null, pointers: new Map(), pinch: null, space: false,
};
let D, P, view, K; // decoder.js, prompts.js, the Viewport, store.js

// ------------------------------------------------------------------------------------------
// words for the user

function say(text) { statusLine.textContent = text || S.notice; }

function progress() {
  const stage = STAGES[S.preparing];
  const n = S.queue.length, kept = n ? ` Your ${n} click${n > 1 ? "s are" : " is"} kept.` : "";
  progressLine.textContent = stage ? stage + kept : "";
  progressLine.hidden = !stage;
  root.dataset.preparing = S.preparing;
  root.dataset.queued = String(n);
}

function bump(kind) {
  S.versions[kind] += 1;
  const name = kind === "hover" ? "hoverVersion" : "maskVersion";
  root.dataset[name] = element.dataset[name] = String(S.versions[kind]);
}

// ------------------------------------------------------------------------------------------
// geometry: the one place client coordinates become image pixels (the overlay's box follows
// the zoom, so a click lands where it looks)

function toImage(evt) {
  const r = overlay.getBoundingClientRect(), { width: W, height: H } = S.geom;
  const x = Math.floor(((evt.clientX - r.left) / r.width) * W);
  const y = Math.floor(((evt.clientY - r.top) / r.height) * H);
  return [Math.min(W - 1, Math.max(0, x)), Math.min(H - 1, Math.max(0, y))];
}

function toShown(x, y) {
  const [w, h] = S.geom.shown;
  return [((x + 0.5) * w) / S.geom.width, ((y + 0.5) * h) / S.geom.height];
}

function setGeometry(g) {
  const changed = !S.geom || S.geom.shown[0] !== g.shown[0] || S.geom.shown[1] !== g.shown[1];
  S.geom = { width: g.width, height: g.height, shown: g.shown };
  if (changed) { overlay.width = g.shown[0]; overlay.height = g.shown[1]; fit(); }
  document.documentElement.dataset.ospreyImage = "open";
}

// the image fills the width it has, up to the height the page gives it (a small photo grows,
// at most 3x); the overlay follows it
function fit() {
  if (!S.geom || !view) return;
  const [w, h] = S.geom.shown;
  const maxH = parseFloat(getComputedStyle(stage).maxHeight) || 0.7 * innerHeight;
  const scale = Math.min(frame.clientWidth / w, maxH / h, 3);
  img.style.width = `${Math.floor(w * scale)}px`;
  img.style.height = `${Math.floor(h * scale)}px`;
  view.apply();
}

// the size the server shows an image at (osprey/app/drawing.py display_size)
function displaySize(w, h) {
  const scale = Math.min(1, 1024 / Math.max(w, h));
  return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
}

// ------------------------------------------------------------------------------------------
// opening an image: shown at once from this browser's copy, prepared meanwhile

async function showLocal(url, source) {
  S.opening = source; S.previous = S.image ? { image: S.image, base: img.src } : S.previous;
  S.image = null; S.emb = null; S.embKey = null; S.queue = []; S.auto = null; S.regions = null;
  S.prompt = P.emptyPrompt(); S.hover = null; S.kbd = null;
  delete root.dataset.ready;
  frame.classList.remove("osc-empty");
  img.src = url;
  await img.decode().catch(() => {});
  setGeometry({ width: img.naturalWidth || 1, height: img.naturalHeight || 1, shown: displaySize(img.naturalWidth || 1, img.naturalHeight || 1) });
  view.fit(); draw(); drawThumbs(); bump("mask");
  stage.scrollIntoView({ block: "nearest" });
}

async function openFile(file) {
  if (!file || !/^image\//.test(file.type)) { say("That is not an image: open a photo (JPEG, PNG, WebP)."); return; }
  await showLocal(URL.createObjectURL(file), { blob: file, name: file.name || "pasted image" });
  S.preparing = "upload"; progress();
  try {
    const sent = await upload(file);
    S.preparing = "sam"; progress();
    trigger("open_file", { path: sent.path });
  } catch (err) {
    refused(`The photo could not be sent (${err.message || err}).`);
  }
}

async function openExample(index) {
  const example = props.examples[index];
  await showLocal(abs(example.url), { example: example.name });
  S.preparing = "sam"; progress();
  trigger("open_example", { index });
}

// after a reload: what this browser kept comes back (the server checks it as any input)
async function restoreKept() {
  let record = null;
  try { record = await K.load(); } catch { return; }
  if (!record || !record.saved || S.image || S.opening) return;
  const source = record.source || {};
  const example = props.examples.find((e) => e.name === source.example);
  if (!source.blob && !example) return;
  await showLocal(source.blob ? URL.createObjectURL(source.blob) : abs(example.url), source);
  S.preparing = "restore"; progress();
  try {
    const data = { saved: record.saved };
    if (source.blob) data.path = (await upload(new File([source.blob], source.name || "image", { type: source.blob.type }))).path;
    else data.example = source.example;
    trigger("restore", data);
  } catch (err) {
    refused(`What this browser kept could not be sent (${err.message || err}).`);
  }
}

// the server refused the new image (or it never arrived): back to what was shown before
function refused(message) {
  S.opening = null; S.preparing = ""; S.queue = []; progress();
  const before = S.previous;
  S.previous = null;
  if (before) { S.image = before.image; img.src = before.base; setGeometry(before.image); prepare(before.image); }
  else closeImage();
  say(message);
}

function closeImage() {
  S.image = null; S.geom = null; S.prompt = P.emptyPrompt(); S.hover = null; S.queue = [];
  frame.classList.add("osc-empty");
  delete document.documentElement.dataset.ospreyImage;
  img.removeAttribute("src"); draw(); drawThumbs(); writeBack();
}

// ------------------------------------------------------------------------------------------
// the decoder: loaded once per page (before any image), the embedding once per image

function startDecoder(p) {
  if (S.decoderReady && S.decoderUrl === p.decoder) return S.decoderReady;
  S.decoderUrl = p.decoder;
  S.decoderReady = (async () => {
    try {
      if (new URLSearchParams(location.search).get("decoder") === "server") throw new Error("?decoder=server asks for the server");
      if (!p.decoder) throw new Error("the server offers no decoder");
      S.decoder = await D.loadPageDecoder({ vendor: abs(props.static_url + "/vendor/onnxruntime-web/"), url: abs(p.decoder), kind: p.decoder_kind, sam2Url: moduleUrl("sam2_decoder.js") });
      S.notice = "";
    } catch (err) {
      useServer(`The in-page decoder is not available (${err.message || err}); clicks are decoded on the server.`);
    }
    root.dataset.decoder = S.decoder.kind;
    root.dataset.threads = String(S.decoder.threads);
    say(statusLine.textContent);
  })();
  return S.decoderReady;
}

function useServer(notice) {
  S.decoder = new D.ServerDecoder(askServer, abs);
  S.notice = notice;
  root.dataset.decoder = "server";
}

function askServer(clicks) {
  const id = ++S.asks;
  const answer = new Promise((resolve) => S.pending.set(id, resolve));
  trigger("decode", { clicks, id });
  return answer;
}

// the page can decode the image's clicks: the server has it, and so has the decoder
function canDecode() {
  return Boolean(S.image && S.decoder && (S.decoder.kind === "server" || S.emb));
}

async function prepare(image) {
  const key = image.key;
  if (!S.decoder) { S.preparing = S.preparing || "decoder"; progress(); }
  await S.decoderReady;
  if (S.decoder.kind === "page" && S.embKey !== key) {
    S.embKey = key; S.preparing = "embedding"; progress();
    try {
      const emb = await S.decoder.embed(image, abs(image.embedding));
      if (S.image && S.image.key === key) S.emb = emb;
    } catch (err) {
      useServer(`The image embedding could not be loaded (${err.message || err}); clicks are decoded on the server.`);
    }
  }
  if (!S.image || S.image.key !== key) return;
  S.preparing = ""; progress();
  root.dataset.ready = key;
  flushQueue();
  say(S.answersPending ? "Osprey is still reading the photo; answers start once it has." : statusLine.textContent);
}

// ------------------------------------------------------------------------------------------
// clicks, hover and the prompt

function ctxOf() { return { decoder: S.decoder, image: S.image, emb: S.emb, auto: S.auto }; }

function mode(evt) {
  if (evt && (evt.button === 2 || evt.altKey) && S.tool !== "pick") return "negative";
  return MODES[S.tool];
}

// clicks run one after the other, each on the prompt the previous one left; made before the
// page can decode, they wait (as fractions of the image: the server's image may be resized)
function click(x, y, m) {
  if (!S.geom) return Promise.resolve();
  if (!canDecode()) {
    S.queue.push([x / S.geom.width, y / S.geom.height, m]);
    progress(); draw();
    return Promise.resolve();
  }
  const task = S.hoverTask;
  if (task) task.claimed = true; // its preview is not drawn: this click goes first
  S.hoverNext = null;
  S.chain = S.chain.then(() => clickNow(x, y, m, task));
  return S.chain;
}

function flushQueue() {
  const queued = S.queue;
  S.queue = [];
  progress();
  for (const [fx, fy, m] of queued) {
    click(Math.min(S.geom.width - 1, Math.floor(fx * S.geom.width)), Math.min(S.geom.height - 1, Math.floor(fy * S.geom.height)), m);
  }
}

async function clickNow(x, y, m, task) {
  const base = S.prompt, h = S.hover;
  try {
    let p = null;
    if (task && task.x === x && task.y === y && task.mode === m && task.base === base) p = await task.promise;
    else if (h && h.x === x && h.y === y && h.mode === m && h.base === base) p = h.prompt;
    if (!p) p = await P.step(ctxOf(), base, x, y, m);
    if (S.prompt !== base) return; // the server started a new prompt meanwhile
    commit(p);
  } catch (err) {
    say(err instanceof P.UserMessage ? err.message : `Error: ${err.message || err}`);
  }
}

function hover(x, y) {
  if (!canDecode() || S.decoder.kind !== "page") return;
  const m = mode();
  if (m === "box" && !S.prompt.corner) return;
  // the point's preview is on its way, or drawn: no second decode (the browser sends a move at
  // the same point before each click: it would make the click wait for it)
  const here = (h) => h && h.x === x && h.y === y && h.mode === m && h.base === S.prompt;
  if (here(S.hoverTask)) { S.hoverNext = null; return; }
  if (here(S.hover) && !S.hoverTask) return;
  if (S.hoverTask) { S.hoverNext = [x, y]; return; }
  const base = S.prompt, task = { x, y, mode: m, base, claimed: false };
  task.promise = P.step(ctxOf(), base, x, y, m).catch(() => null);
  S.hoverTask = task;
  task.promise.then((p) => {
    S.hoverTask = null;
    if (task.claimed) return; // a click took it over (or goes first)
    if (S.prompt === base) {
      const c = p ? P.selected(p) : null;
      S.hover = { x, y, mode: m, base, prompt: p, layer: c && c.area ? maskLayer(c.mask, GOLD, 0.22, false) : null };
      draw();
      bump("hover");
    }
    const next = S.hoverNext;
    S.hoverNext = null;
    if (next) hover(...next);
  });
}

// a new selection (click, pick, candidate, undo): the mask is drawn and counted first, the
// candidates' thumbnails right after
function commit(p) {
  S.prompt = p;
  S.hover = null;
  say(p.message);
  draw();
  bump("mask");
  writeBack();
  setTimeout(drawThumbs, 0);
}

function choose(k) {
  if (!S.prompt.pred || k >= S.prompt.pred.cands.length) return;
  commit({ ...S.prompt, candidate: k, message: "" });
}

async function rebuildWithout(index) {
  const clicks = S.prompt.clicks.filter((_, i) => i !== index);
  try { commit(await P.rebuild(ctxOf(), clicks)); } catch (err) { say(`Error: ${err.message || err}`); }
}

function undoClick() {
  if (S.queue.length) { S.queue.pop(); progress(); draw(); return; }
  if (S.prompt.clicks.length) S.chain = S.chain.then(() => rebuildWithout(S.prompt.clicks.length - 1));
}

function clearClicks() {
  S.queue = []; progress();
  commit(P.emptyPrompt());
}

// a drag: a box from corner to corner (a box corner clicked before is dropped first)
function boxDrag(a, b) {
  if (S.prompt.corner && canDecode()) {
    const corner = S.prompt.clicks.map((c) => c[2]).lastIndexOf("box");
    S.chain = S.chain.then(() => rebuildWithout(corner));
  }
  click(a[0], a[1], "box");
  click(b[0], b[1], "box");
}

function addRegion() {
  if (!P.selected(S.prompt) || !P.selected(S.prompt).area) { say("Click on an object first: its mask is what becomes a region."); return; }
  trigger("add_region", {});
}

// the page's prompt travels in props.value.page: the server replays it when a region is added
function writeBack() {
  const page = { clicks: S.prompt.clicks, candidate: S.prompt.candidate };
  props.value = { ...(S.payload || {}), page };
}

// ------------------------------------------------------------------------------------------
// drawing

function maskLayer(mask, rgb, alpha, outline) {
  const [w, h] = S.geom.shown;
  const layer = new ImageData(w, h), px = new Uint32Array(layer.data.buffer);
  const fill = (Math.round(alpha * 255) << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0], white = 0xffffffff;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const x = i % w, edge = outline && (x === 0 || x === w - 1 || i < w || i >= mask.length - w ||
      !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]);
    px[i] = edge ? white : fill;
  }
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  c.getContext("2d").putImageData(layer, 0, 0);
  return c;
}

function draw() {
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!S.geom) return;
  const p = S.prompt, sel = P.selected(p), r = Math.max(4, Math.min(...S.geom.shown) / 100) / Math.sqrt(view.zoom);
  if (S.highlight) ctx.drawImage(S.highlight.layer, 0, 0);
  if (S.hover && S.hover.layer) ctx.drawImage(S.hover.layer, 0, 0);
  if (sel && sel.area) {
    if (!sel.layer) sel.layer = maskLayer(sel.mask, GOLD, 0.45, true);
    ctx.drawImage(sel.layer, 0, 0);
  }
  for (const [x, y, lab] of p.points) dot(x, y, lab ? "#28c83c" : "#dc2828", r);
  if (p.corner) dot(p.corner[0], p.corner[1], "#28c83c", r);
  if (p.box) rect(p.box[0], p.box[1], p.box[2], p.box[3], false);
  if (S.drag && S.drag.kind === "box") rect(...S.drag.start, ...S.drag.end, true);
  for (const [fx, fy, m] of S.queue) dot(fx * S.geom.width, fy * S.geom.height, m === "negative" ? "#dc2828" : "#28c83c", r, true);
  if (S.kbd && document.activeElement === overlay) {
    const [x, y] = toShown(...S.kbd);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x - 10, y); ctx.lineTo(x + 10, y); ctx.moveTo(x, y - 10); ctx.lineTo(x, y + 10); ctx.stroke();
  }
}

function dot(x, y, fill, r, hollow = false) {
  const [sx, sy] = toShown(x, y);
  ctx.beginPath(); ctx.arc(sx, sy, r + 2, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
  ctx.beginPath(); ctx.arc(sx, sy, r, 0, 2 * Math.PI);
  if (hollow) { ctx.lineWidth = 2; ctx.strokeStyle = fill; ctx.stroke(); } else { ctx.fillStyle = fill; ctx.fill(); }
}

function rect(x0, y0, x1, y1, dashed) {
  const [a, b] = toShown(Math.min(x0, x1), Math.min(y0, y1)), [c, d] = toShown(Math.max(x0, x1), Math.max(y0, y1));
  ctx.save();
  ctx.strokeStyle = "rgb(255,215,0)"; ctx.lineWidth = 2 / view.zoom;
  if (dashed) ctx.setLineDash([6 / view.zoom, 4 / view.zoom]);
  ctx.strokeRect(a, b, c - a, d - b);
  ctx.restore();
}

function drawThumbs() {
  thumbs.replaceChildren();
  const p = S.prompt;
  if (!S.geom || !p.pred || p.pred.cands.length < 2) return;
  const [w, h] = S.geom.shown, th = 64, tw = Math.round((th * w) / h);
  p.pred.cands.forEach((c, k) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "osc-thumb";
    b.setAttribute("aria-pressed", String(k === p.candidate));
    b.setAttribute("aria-label", `Candidate ${k + 1} (score ${c.score.toFixed(2)}; key ${k + 1})`);
    const t = document.createElement("canvas");
    t.width = tw; t.height = th;
    const g = t.getContext("2d");
    g.drawImage(img, 0, 0, tw, th);
    if (!c.layer) c.layer = maskLayer(c.mask, GOLD, 0.45, true);
    g.drawImage(c.layer, 0, 0, tw, th);
    const label = document.createElement("span");
    label.textContent = c.score.toFixed(2);
    label.setAttribute("aria-hidden", "true");
    b.append(t, label);
    b.addEventListener("click", () => choose(k));
    thumbs.append(b);
  });
}

// a region's mask highlighted while its chip is hovered or focused (the chips' page says which)
async function highlight(index, color) {
  if (index < 0 || !S.regionsUrl) { S.highlight = null; draw(); return; }
  if (!S.regions) S.regions = await P.loadMasks(abs(S.regionsUrl));
  const m = S.regions[index];
  const rgb = [1, 3, 5].map((i) => parseInt((color || "#ffffff").slice(i, i + 2), 16));
  S.highlight = m ? { index, layer: maskLayer(m.mask, rgb, 0.5, true) } : null;
  draw();
}

// ------------------------------------------------------------------------------------------
// pointer, wheel and touch: click = add, right- or Alt-click = subtract, drag = box, wheel and
// pinch = zoom, middle button / Space + drag / two fingers = pan

function onDown(e) {
  if (!S.geom || e.target.closest("button")) return;
  S.pointers.set(e.pointerId, [e.clientX, e.clientY]);
  stage.setPointerCapture(e.pointerId);
  if (S.pointers.size === 2) { S.drag = null; S.pinch = pinchOf(); draw(); return; }
  if (S.pointers.size > 2) return;
  if (e.button === 1 || S.space) { S.drag = { kind: "pan", at: [e.clientX, e.clientY] }; e.preventDefault(); return; }
  if (e.button !== 0 && e.button !== 2) return;
  S.drag = { kind: "press", start: toImage(e), end: toImage(e), at: [e.clientX, e.clientY], mode: mode(e) };
}

function onMove(e) {
  if (!S.geom) return;
  if (S.pointers.has(e.pointerId)) S.pointers.set(e.pointerId, [e.clientX, e.clientY]);
  if (S.pinch) { movePinch(); return; }
  const d = S.drag;
  if (!d) { if (e.pointerType === "mouse") hover(...toImage(e)); return; }
  if (d.kind === "pan") { view.panBy(e.clientX - d.at[0], e.clientY - d.at[1]); d.at = [e.clientX, e.clientY]; return; }
  const far = Math.hypot(e.clientX - d.at[0], e.clientY - d.at[1]) > 6;
  if (d.kind === "press" && far && (d.mode === "positive" || d.mode === "box")) d.kind = "box";
  if (d.kind === "box") { d.end = toImage(e); draw(); }
}

function onUp(e) {
  S.pointers.delete(e.pointerId);
  if (S.pinch) { if (S.pointers.size < 2) S.pinch = null; S.drag = null; return; }
  const d = S.drag;
  S.drag = null;
  if (!d || !S.geom) return;
  if (d.kind === "press") click(...d.start, d.mode);
  else if (d.kind === "box") { draw(); boxDrag(d.start, d.end); }
}

function pinchOf() {
  const [a, b] = [...S.pointers.values()];
  return { dist: Math.hypot(a[0] - b[0], a[1] - b[1]), mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
}

function movePinch() {
  if (S.pointers.size < 2) return;
  const now = pinchOf(), before = S.pinch;
  view.panBy(now.mid[0] - before.mid[0], now.mid[1] - before.mid[1]);
  view.zoomAt(now.dist / Math.max(1, before.dist), now.mid[0], now.mid[1]);
  S.pinch = now;
}

function onWheel(e) {
  if (!S.geom) return;
  e.preventDefault();
  view.zoomAt(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), e.clientX, e.clientY);
}

stage.addEventListener("pointerdown", onDown);
stage.addEventListener("pointermove", onMove);
stage.addEventListener("pointerup", onUp);
stage.addEventListener("pointercancel", (e) => { S.pointers.delete(e.pointerId); S.pinch = null; S.drag = null; draw(); });
stage.addEventListener("pointerleave", () => { if (S.hover) { S.hover = null; draw(); } });
stage.addEventListener("contextmenu", (e) => { if (S.geom) e.preventDefault(); });
stage.addEventListener("wheel", onWheel, { passive: false });

// ------------------------------------------------------------------------------------------
// keyboard: the canvas's cursor when its image has focus, the shortcuts while the canvas has

function typing(target) {
  return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function onCursorKey(e) {
  const step = Math.max(1, Math.round(S.geom.width / (e.shiftKey ? 10 : 50)));
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  S.kbd = S.kbd || [Math.floor(S.geom.width / 2), Math.floor(S.geom.height / 2)];
  if (moves[e.key]) {
    const [dx, dy] = moves[e.key];
    S.kbd = [Math.min(S.geom.width - 1, Math.max(0, S.kbd[0] + dx * step)), Math.min(S.geom.height - 1, Math.max(0, S.kbd[1] + dy * step))];
    view.show(S.kbd[0] / S.geom.width, S.kbd[1] / S.geom.height);
    hover(...S.kbd);
  } else if (e.key === "Enter") click(...S.kbd, mode(e));
  else return false;
  draw();
  return true;
}

const SHORTCUTS = {
  a: addRegion, Escape: () => (keys.hidden ? clearClicks() : toggleKeys(false)), Backspace: undoClick,
  1: () => choose(0), 2: () => choose(1), 3: () => choose(2),
  s: () => setTool(S.tool === "subtract" ? "add" : "subtract"), b: () => setTool("box"), p: () => setTool("pick"),
  e: () => trigger("everything", {}), o: () => fileInput.click(), "?": () => toggleKeys(),
  "+": () => view.zoomAt(1.25), "=": () => view.zoomAt(1.25), "-": () => view.zoomAt(0.8), 0: () => view.fit(),
};

// the shortcuts work while the canvas (its image, toolbar, candidates) has focus, or nothing
// has: a letter typed elsewhere on the page is never taken (WCAG 2.1.4)
function mine() {
  const active = document.activeElement;
  return !active || active === document.body || element.contains(active);
}

function onKey(e) {
  if (typing(e.target) || !mine()) return;
  if (e.key === " " && stage.matches(":hover")) { S.space = e.type === "keydown"; e.preventDefault(); return; }
  if (e.type !== "keydown" || !frame.isConnected) return;
  const mod = e.ctrlKey || e.metaKey, k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (mod && (k === "z" || k === "y")) {
    if (k === "z" && !e.shiftKey && (S.prompt.clicks.length || S.queue.length)) undoClick();
    else trigger(k === "y" || e.shiftKey ? "redo_edit" : "undo_edit", {});
  } else if (mod || e.altKey) return;
  else if (S.geom && document.activeElement === overlay && onCursorKey(e)) { /* the cursor moved or clicked */ }
  else if (SHORTCUTS[k] && (S.geom || k === "o" || k === "?")) SHORTCUTS[k]();
  else return;
  e.preventDefault();
}

document.addEventListener("keydown", onKey);
document.addEventListener("keyup", onKey);
overlay.addEventListener("focus", draw);
overlay.addEventListener("blur", draw);

// ------------------------------------------------------------------------------------------
// the toolbar, the examples, drop and paste, the shortcuts popover

function setTool(tool) {
  S.tool = tool;
  for (const b of element.querySelectorAll(".osc-tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  frame.dataset.tool = tool;
  if (S.hover) { S.hover = null; draw(); }
}

function toggleKeys(show = keys.hidden) {
  keys.hidden = !show;
  $(".osc-help").setAttribute("aria-expanded", String(show));
}

function renderExamples() {
  const strip = $(".osc-examples");
  props.examples.forEach((example, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "osc-example";
    b.title = `Open the example photo '${example.name}'`;
    const im = document.createElement("img");
    im.src = abs(example.url); im.alt = example.name; im.loading = "lazy";
    b.append(im);
    b.addEventListener("click", () => openExample(i));
    strip.append(b);
  });
}

function bindControls() {
  for (const b of element.querySelectorAll(".osc-tool")) b.addEventListener("click", () => setTool(b.dataset.tool));
  for (const b of element.querySelectorAll(".osc-open")) b.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => { openFile(fileInput.files[0]); fileInput.value = ""; });
  $(".osc-add-region").addEventListener("click", addRegion);
  $(".osc-clear").addEventListener("click", clearClicks);
  $(".osc-everything").addEventListener("click", () => trigger("everything", {}));
  $(".osc-zoom-in").addEventListener("click", () => view.zoomAt(1.5));
  $(".osc-zoom-out").addEventListener("click", () => view.zoomAt(1 / 1.5));
  $(".osc-zoom-fit").addEventListener("click", () => view.fit());
  $(".osc-help").addEventListener("click", () => toggleKeys());
  frame.addEventListener("dragover", (e) => { e.preventDefault(); frame.classList.add("osc-dropping"); });
  frame.addEventListener("dragleave", () => frame.classList.remove("osc-dropping"));
  frame.addEventListener("drop", (e) => {
    e.preventDefault(); frame.classList.remove("osc-dropping");
    openFile([...(e.dataTransfer.files || [])].find((f) => f.type.startsWith("image/")));
  });
  document.addEventListener("paste", (e) => {
    if (typing(e.target)) return;
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); openFile(file); }
  });
  window.addEventListener("osprey-highlight", (e) => highlight(e.detail.index, e.detail.color));
  setTool("add");
}

// ------------------------------------------------------------------------------------------
// the server's view

function onValue() {
  const p = props.value;
  if (!p || p === S.payload || p.page !== undefined) return; // our own write-back
  const preview = p.preview;
  if (preview && S.pending.has(preview.id)) { S.pending.get(preview.id)(preview); S.pending.delete(preview.id); }
  S.views = S.views.then(() => showView(p)).catch((err) => say(`Error: ${err.message || err}`));
}

async function showView(p) {
  S.payload = p;
  keep(p);
  startDecoder(p);
  if (p.refused) { refused(p.message); return; }
  if (!p.image) { if (!S.opening) closeImage(); say(p.message); return; }
  const fresh = !S.image || S.image.key !== p.image.key;
  if (fresh) { S.source = S.opening || S.source; S.opening = null; S.previous = null; S.emb = null; S.embKey = null; S.regions = null; }
  S.image = p.image;
  S.answersPending = p.preparing === "answers";
  setGeometry(p.image);
  if (p.prompt !== S.promptKey) { // the server started a new prompt (upload, add, clear)
    const had = S.prompt.clicks.length > 0;
    S.promptKey = p.prompt; S.prompt = P.emptyPrompt(); S.hover = null; drawThumbs();
    if (had) { draw(); bump("mask"); }
  }
  writeBack();
  say(p.message);
  if (abs(p.image.base) !== img.src) {
    img.src = abs(p.image.base);
    await img.decode().catch(() => {});
    bump("mask");
  }
  if (p.auto !== S.autoUrl) { S.autoUrl = p.auto; S.auto = p.auto ? await P.loadMasks(abs(p.auto)) : null; }
  if (p.regions !== S.regionsUrl) { S.regionsUrl = p.regions; S.regions = null; S.highlight = null; }
  draw();
  if (fresh || !root.dataset.ready) prepare(p.image);
}

// what this browser keeps: written when the server's snapshot changes ("Clear all" forgets it)
function keep(p) {
  const json = JSON.stringify(p.saved ?? null);
  if (p.forget) { S.savedJson = json; K.clear().catch(() => {}); return; }
  if (json === S.savedJson) return;
  S.savedJson = json;
  const source = S.opening && p.image && (!S.image || S.image.key !== p.image.key) ? S.opening : S.source;
  if (p.saved && source) K.save({ source, saved: p.saved }).catch(() => {});
}

// ------------------------------------------------------------------------------------------
// start: the modules, then the server's view, then what this browser kept

async function start() {
  const [decoder, prompts, viewport, store] = await Promise.all(
    ["decoder.js", "prompts.js", "viewport.js", "store.js"].map((m) => import(moduleUrl(m))));
  D = decoder; P = prompts; K = store;
  S.prompt = P.emptyPrompt();
  view = new viewport.Viewport(stage, world, (v) => { root.dataset.zoom = v.zoom.toFixed(2); draw(); });
  bindControls();
  renderExamples();
  root.dataset.started = "true"; // the controls listen from now on (tests wait for it)
  new ResizeObserver(fit).observe(frame);
  watch("value", onValue);
  S.payload = null;
  onValue();
  await S.views;
  await restoreKept();
}

start().catch((err) => say(`The page could not start: ${err.message || err}`));

// test and benchmark hook: the selected mask at display size as run lengths (row-major, from 0)
window.ospreyCanvas = {
  maskRuns() {
    const c = P.selected(S.prompt);
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
  shown: () => (S.geom ? S.geom.shown : null),
  zoom: () => ({ zoom: view.zoom, tx: view.tx, ty: view.ty }),
};
