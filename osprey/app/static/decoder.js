// SAM's prompt encoder + mask decoder for the canvas page, kept apart from the page's
// interaction (canvas.js): the ONNX decoder run here with onnxruntime-web on the image embedding
// fetched once per image, or, where that cannot run, the server decoding each prompt (the
// fallback). Both answer a prompt with SAM's candidates at display size, best first.
//
// SAM 1's inputs are built here; SAM 2's in sam2_decoder.js (imported for a SAM 2 decoder). The
// inputs mirror tests/support/page_decoder.py, and the prompts osprey/app/mask_prompts.py.

// float16 bits -> float32
export function halfToFloat(half) {
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

// candidates sorted by score; the best non-empty one's low-res logits are refined next
export function finish(cands) {
  cands.sort((a, b) => b.score - a.score);
  const best = cands.find((c) => c.area > 0);
  return { cands, low: best ? best.low : null, empty: !best };
}

// the decoder in this page: { vendor, url, kind, abs } -> PageDecoder
export async function loadPageDecoder({ vendor, url, kind, sam2Url }) {
  if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
  const ort = await import(vendor + "ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = vendor;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const session = await ort.InferenceSession.create(url, { executionProviders: ["wasm"] });
  const layout = kind === "sam2" ? await import(sam2Url) : null;
  return new PageDecoder(ort, session, layout);
}

class PageDecoder {
  constructor(ort, session, layout) {
    this.kind = "page";
    this.ort = ort;
    this.session = session;
    this.layout = layout;
    this.threads = ort.env.wasm.numThreads;
    this.zeros = new ort.Tensor("float32", new Float32Array(256 * 256), [1, 1, 256, 256]);
    this.lock = Promise.resolve();
  }

  // the image's embedding (SAM 1: one map; SAM 2: three), fetched once per image
  async embed(image, url) {
    if (this.layout) return this.layout.embed(this.ort, image, url, halfToFloat);
    const response = await fetch(url);
    if (!response.ok) throw new Error(`the image embedding answered ${response.status}`);
    const [gh, gw] = image.grid;
    return new this.ort.Tensor("float32", halfToFloat(new Uint16Array(await response.arrayBuffer())), [1, image.channels, gh, gw]);
  }

  // the ONNX inputs, as tests/support/page_decoder.py `feeds` builds them
  feeds(image, emb, p, previous) {
    if (this.layout) return this.layout.feeds(this.ort, image, emb, p, previous, this.zeros);
    const T = this.ort.Tensor;
    const sx = image.input[1] / image.width, sy = image.input[0] / image.height;
    const coords = [], labels = [];
    for (const [x, y, lab] of p.points) { coords.push(x * sx, y * sy); labels.push(lab); }
    if (p.box) {
      const [x0, y0, x1, y1] = p.box;
      coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
      labels.push(2, 3);
    } else { coords.push(0, 0); labels.push(-1); }
    const n = labels.length;
    return {
      image_embeddings: emb,
      point_coords: new T("float32", Float32Array.from(coords), [1, n, 2]),
      point_labels: new T("float32", Float32Array.from(labels), [1, n]),
      mask_input: previous ? new T("float32", previous, [1, 1, 256, 256]) : this.zeros,
      has_mask_input: new T("float32", Float32Array.of(previous ? 1 : 0), [1]),
      orig_im_size: new T("float32", Float32Array.of(image.shown[1], image.shown[0]), [2]),
    };
  }

  // one run at a time (onnxruntime-web's session is not reentrant); a run is never cancelled,
  // so whoever waits here waits for at most the run in flight
  run(feeds) {
    const run = this.lock.then(() => this.session.run(feeds));
    this.lock = run.catch(() => {});
    return run;
  }

  async decode(image, emb, p, previous) {
    const multimask = p.points.length === 1 && !p.box && !previous;
    const out = await this.run(this.feeds(image, emb, p, previous));
    const [w, h] = image.shown, size = w * h;
    const logits = out.masks.data, scores = out.iou_predictions.data, low = out.low_res_masks.data;
    const cands = (multimask ? [1, 2, 3] : [0]).map((k) => {
      const mask = new Uint8Array(size);
      let area = 0;
      for (let i = 0, o = k * size; i < size; i++) if (logits[o + i] > 0) { mask[i] = 1; area++; }
      return { mask, area, score: scores[k], low: low.slice(k * 65536, (k + 1) * 65536) };
    });
    return finish(cands);
  }
}

// the fallback: the server decodes each prompt; ask(clicks) resolves with its preview
// ({ masks: url of a PNG with mask k in bit k, scores } or { error })
export class ServerDecoder {
  constructor(ask, abs) {
    this.kind = "server";
    this.threads = 0;
    this.ask = ask;
    this.abs = abs;
  }

  async embed() { return null; }

  async decode(image, emb, p) {
    const preview = await this.ask(p.clicks);
    if (preview.error) throw new Error(preview.error);
    if (!preview.masks) return finish([]);
    const planes = await pixels(this.abs(preview.masks));
    const cands = preview.scores.map((score, k) => {
      const mask = new Uint8Array(planes.length);
      let area = 0;
      for (let i = 0; i < planes.length; i++) if ((planes[i] >> k) & 1) { mask[i] = 1; area++; }
      return { mask, area, score, low: null };
    });
    return finish(cands);
  }
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
