// Zoom and pan of the canvas page's image: the world (the image and its overlay) is scaled and
// moved inside the stage with one CSS transform, so a click's client position maps to image
// pixels through the overlay's bounding box at any zoom (canvas.js toImage), and the decoder
// never sees the zoom. The world always covers the stage: no panning into emptiness.

const MAX_ZOOM = 16;

export class Viewport {
  constructor(stage, world, onChange) {
    this.stage = stage;
    this.world = world;
    this.onChange = onChange;
    this.fit();
  }

  get zoomed() { return this.zoom > 1.0001; }

  fit() {
    this.zoom = 1; this.tx = 0; this.ty = 0;
    this.apply();
  }

  // zoom by `factor` keeping the point under (clientX, clientY) where it is (default: centre)
  zoomAt(factor, clientX, clientY) {
    const r = this.stage.getBoundingClientRect();
    const cx = (clientX ?? r.left + r.width / 2) - r.left, cy = (clientY ?? r.top + r.height / 2) - r.top;
    const zoom = Math.min(MAX_ZOOM, Math.max(1, this.zoom * factor));
    const k = zoom / this.zoom;
    this.tx = cx - (cx - this.tx) * k;
    this.ty = cy - (cy - this.ty) * k;
    this.zoom = zoom;
    this.apply();
  }

  panBy(dx, dy) {
    this.tx += dx; this.ty += dy;
    this.apply();
  }

  // bring image point (fx, fy) (fractions of the image) into view, e.g. a keyboard cursor
  show(fx, fy) {
    const w = this.world.offsetWidth, h = this.world.offsetHeight;
    const x = this.tx + fx * w * this.zoom, y = this.ty + fy * h * this.zoom;
    if (x < 0 || x > w) this.tx -= x - w / 2;
    if (y < 0 || y > h) this.ty -= y - h / 2;
    this.apply();
  }

  apply() {
    const w = this.world.offsetWidth, h = this.world.offsetHeight;
    this.tx = Math.min(0, Math.max(w - w * this.zoom, this.tx));
    this.ty = Math.min(0, Math.max(h - h * this.zoom, this.ty));
    this.world.style.transform = this.zoomed ? `translate(${this.tx}px, ${this.ty}px) scale(${this.zoom})` : "";
    this.onChange(this);
  }
}
