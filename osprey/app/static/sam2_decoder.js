// SAM 2.1's page decoder: how its image maps are fetched and how a prompt becomes the inputs of
// its ONNX decoder (sam_bridge/sam2_onnx.py). decoder.js imports this module when the server's
// segmenter is SAM 2 and runs the decoder exactly as SAM 1's (same outputs: masks, scores, logits).
//
// SAM 2 differs from SAM 1 in two ways the page sees:
// * an image is three maps, not one: the 64x64 embedding and two high-resolution maps (256x256 and
//   128x128), sent as one float16 file (image.maps lists their shapes in order), its low bytes
//   first, then its high bytes, gzip-compressed (osprey/app/canvas_page.py pack_maps);
// * its 1024 frame is every image stretched to a square (x * 1024 / W, y * 1024 / H: image.input
//   is [1024, 1024]), and its prompt always ends with one padding point labelled -1, box or not.
//
// Kept apart from canvas.js, which is the page's interaction; tests/support/page_decoder.py
// builds the same inputs in Python (feeds_sam2).

async function gunzip(response) {
  if (typeof DecompressionStream !== "function") throw new Error("this browser cannot gunzip");
  return new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
}

// the file's float16 values: low bytes first, then high bytes
function halves(buf) {
  const bytes = new Uint8Array(buf), n = bytes.length >> 1;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes[i] | (bytes[n + i] << 8);
  return out;
}

// the image's maps as float32 tensors: { image_embeddings, high_res_feats_0, high_res_feats_1 }
export async function embed(ort, image, url, halfToFloat) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the image maps answered ${response.status}`);
  const half = halves(await gunzip(response));
  const names = ["image_embeddings", "high_res_feats_0", "high_res_feats_1"];
  const out = {};
  let offset = 0;
  image.maps.forEach((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (offset + n > half.length) throw new Error("the image maps are truncated");
    out[names[k]] = new ort.Tensor("float32", halfToFloat(half.subarray(offset, offset + n)), shape);
    offset += n;
  });
  if (offset !== half.length) throw new Error("the image maps have an unexpected size");
  return out;
}

// the ONNX inputs for the page's prompt p ({ points: [[x, y, label]], box }) and the previous
// low-res logits (or null)
export function feeds(ort, image, maps, p, previous, zeros) {
  const T = ort.Tensor;
  const sx = image.input[1] / image.width, sy = image.input[0] / image.height;
  const coords = [], labels = [];
  for (const [x, y, lab] of p.points) { coords.push(x * sx, y * sy); labels.push(lab); }
  if (p.box) {
    const [x0, y0, x1, y1] = p.box;
    coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
    labels.push(2, 3);
  }
  coords.push(0, 0); labels.push(-1); // SAM 2 always adds one padding point
  const n = labels.length;
  return {
    ...maps,
    point_coords: new T("float32", Float32Array.from(coords), [1, n, 2]),
    point_labels: new T("float32", Float32Array.from(labels), [1, n]),
    mask_input: previous ? new T("float32", previous, [1, 1, 256, 256]) : zeros,
    has_mask_input: new T("float32", Float32Array.of(previous ? 1 : 0), [1]),
    orig_im_size: new T("float32", Float32Array.of(image.shown[1], image.shown[0]), [2]),
  };
}
