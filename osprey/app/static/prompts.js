// The prompt the canvas page builds from clicks, a mirror of osprey/app/mask_prompts.py
// (MaskPrompts.click) so that replaying the clicks on the server gives the mask shown here: a
// positive / negative click adds a point and refines the previous prediction's best low-res
// logits once there is more than one point; in box mode two clicks (or a drag's two corners)
// make a box; a pick selects the smallest "segment everything" mask under the click.

export class UserMessage extends Error {}

export function emptyPrompt() {
  return { clicks: [], points: [], box: null, corner: null, pred: null, candidate: 0, message: "" };
}

// the prompt after one more click; ctx = { decoder, image, emb, auto }
export async function step(ctx, p, x, y, m) {
  const n = { ...p, points: p.points.slice(), clicks: p.clicks.concat([[x, y, m]]), message: "" };
  if (m === "pick") {
    const found = maskAt(ctx.auto, ctx.image, x, y);
    if (!found) throw new UserMessage(ctx.auto ? "No mask under this click." : "Run 'Segment everything' first (E).");
    return { ...n, pred: picked(found), candidate: 0 };
  }
  if (m === "box") {
    if (!n.corner) return { ...n, corner: [x, y], message: "Now click the opposite corner of the box." };
    const [x0, y0] = n.corner;
    n.corner = null;
    if (Math.abs(x - x0) < 2 || Math.abs(y - y0) < 2) {
      const corner = n.clicks.map((c) => c[2]).lastIndexOf("box", n.clicks.length - 2);
      const clicks = n.clicks.slice(0, -1).filter((_, i) => i !== corner); // replayed: never sent
      return { ...n, clicks, message: "The box is too thin: drag or click two opposite corners." };
    }
    n.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
  } else n.points.push([x, y, m === "negative" ? 0 : 1]);
  const previous = n.pred && n.points.length > 1 ? n.pred.low : null;
  n.pred = await ctx.decoder.decode(ctx.image, ctx.emb, n, previous);
  n.candidate = 0;
  if (n.pred.empty) n.message = "SAM found no region for this prompt; try another point.";
  return n;
}

export async function rebuild(ctx, clicks) {
  let p = emptyPrompt();
  for (const [x, y, m] of clicks) p = await step(ctx, p, x, y, m);
  return p;
}

// the chosen candidate of a prompt (or null)
export function selected(p) {
  return p.pred && p.pred.cands.length ? p.pred.cands[Math.min(p.candidate, p.pred.cands.length - 1)] : null;
}

function picked(found) {
  return { cands: [{ mask: found.mask, area: found.area, score: 1, low: null }], low: null, empty: false };
}

// ------------------------------------------------------------------------------------------
// masks sent by the server at display size: "segment everything" and the regions

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

// a masks file (osprey/app/canvas_page.py display_masks) -> [{ mask, area }] in file order
export async function loadMasks(url) {
  const data = await (await fetch(url)).json();
  const [h, w] = data.size;
  return data.masks.map((m) => ({ mask: rleMask(m.counts, h, w), area: m.area }));
}

// the smallest mask under image pixel (x, y), as the server picks
export function maskAt(masks, image, x, y) {
  if (!masks) return null;
  const [w, h] = image.shown;
  const i = Math.floor(((y + 0.5) * h) / image.height) * w + Math.floor(((x + 0.5) * w) / image.width);
  let best = null;
  for (const m of masks) if (m.mask[i] && (!best || m.area < best.area)) best = m;
  return best;
}
