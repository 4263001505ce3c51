// The region chips beside the chat (osprey/app/chips_component.py): one chip per region in its
// colour, its name edited in place, a tick to ask about it and × to delete it; undo, redo and
// "Clear all" above them. Hovering or focusing a chip highlights the region on the canvas (a DOM
// event, "osprey-highlight", that canvas.js listens to).
//
// Gradio runs this file as `js_on_load` with `element`, `props` (`props.value`: the server's
// chips, osprey/app/canvas_page.py region_chips; this page adds the ticked ids under `ticked`),
// `trigger` and `watch`. Its events: "rename_region", "remove_region", "undo_edit",
// "redo_edit", "clear_all".

const box = element.querySelector(".orc");
const list = element.querySelector(".orc-list");
const ticked = new Set();
let shown = null;

function highlight(index, color) {
  window.dispatchEvent(new CustomEvent("osprey-highlight", { detail: { index, color } }));
}

function writeBack() {
  props.value = { ...shown, ticked: [...ticked] };
}

function render() {
  const value = props.value || {};
  if (value.ticked !== undefined && shown) return; // our own write-back
  shown = value;
  const regions = value.regions || [];
  for (const id of [...ticked]) if (!regions.some((r) => r.id === id)) ticked.delete(id);
  list.replaceChildren(...regions.map(chip));
  box.classList.toggle("orc-none", !regions.length && !value.can_undo && !value.can_redo);
  element.querySelector(".orc-undo").disabled = !value.can_undo;
  element.querySelector(".orc-redo").disabled = !value.can_redo;
  element.querySelector(".orc-clear").disabled = !regions.length;
  highlight(-1);
}

function chip(region) {
  const li = document.createElement("li");
  li.className = "orc-chip";
  li.style.setProperty("--chip", region.color);
  li.dataset.id = region.id;
  const tick = document.createElement("input");
  tick.type = "checkbox";
  tick.checked = ticked.has(region.id);
  tick.setAttribute("aria-label", `Ask about ${region.name}`);
  tick.addEventListener("change", () => { if (tick.checked) ticked.add(region.id); else ticked.delete(region.id); writeBack(); });
  const name = document.createElement("button");
  name.type = "button";
  name.className = "orc-name";
  name.textContent = region.name;
  name.title = [region.category && `Category: ${region.category}`, region.caption, "Click to rename"].filter(Boolean).join("\n");
  name.setAttribute("aria-label", `Rename ${region.name}`);
  name.addEventListener("click", () => rename(li, region));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "orc-remove";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Delete ${region.name}`);
  remove.addEventListener("click", () => trigger("remove_region", { id: region.id }));
  li.append(tick, name, remove);
  const index = (shown.regions || []).indexOf(region);
  for (const type of ["pointerenter", "focusin"]) li.addEventListener(type, () => highlight(index, region.color));
  for (const type of ["pointerleave", "focusout"]) li.addEventListener(type, () => highlight(-1));
  return li;
}

// the name becomes a text field: Enter keeps the new name, Escape (or leaving it unchanged) not
function rename(li, region) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = "orc-input";
  input.value = region.label;
  input.placeholder = "a name, e.g. dog";
  input.maxLength = 40;
  input.setAttribute("aria-label", `New name for ${region.name.split(" ")[0]}`);
  const button = li.querySelector(".orc-name");
  let done = false;
  const finish = (keepIt) => {
    if (done) return;
    done = true;
    if (keepIt && input.value.trim() !== region.label) trigger("rename_region", { id: region.id, name: input.value });
    input.replaceWith(button);
    button.focus();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); finish(true); }
    else if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
  button.replaceWith(input);
  input.focus();
  input.select();
}

element.querySelector(".orc-undo").addEventListener("click", () => trigger("undo_edit", {}));
element.querySelector(".orc-redo").addEventListener("click", () => trigger("redo_edit", {}));
element.querySelector(".orc-clear").addEventListener("click", () => trigger("clear_all", {}));
watch("value", render);
render();
