// The explorer page: plain JavaScript over the JSON API of keras_vae/explore/api.py (docs/explore.md).
"use strict";

const $ = (id) => document.getElementById(id);
// The colours of the map's classes (matplotlib's tab10), then evenly spaced hues.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
const GAP = 2;
const SLIDER_SPAN = 3;  // sliders move from -3 to +3 standard deviations (or latent units)

let facts = null;
let atlas = null;  // {points, labels, classes, explained, count, extent, background}
let base = null;  // the traversal's latent: the chosen image's posterior mean
let baseLabel = null;

async function api(path, body) {
  const options = body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch("api/" + path, options);
  let answer;
  try {
    answer = await response.json();
  } catch (error) {
    throw new Error(`${path}: the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(answer.error || `${path}: the server answered ${response.status}`);
  return answer;
}

function showError(error) {
  $("error").textContent = error.message;
  $("error").hidden = false;
}

// Runs `task` with the latest arguments only: while one request is on its way, later calls replace
// each other, so a slider drag never queues stale requests behind the one being answered.
function live(task) {
  let running = false;
  let pending = null;
  return (...args) => {
    pending = args;
    if (running) return;
    running = true;
    (async () => {
      while (pending) {
        const next = pending;
        pending = null;
        try {
          await task(...next);
          $("error").hidden = true;
        } catch (error) {
          showError(error);
        }
      }
      running = false;
    })();
  };
}

// Images of the API ({shape: [n, h, w, c], pixels: base64 uint8}) tiled `columns` to a row, each
// `scale` screen pixels per image pixel, drawn into `canvas` (resized to fit).
function paint(canvas, images, columns, scale) {
  const [n, h, w, c] = images.shape;
  const bytes = Uint8Array.from(atob(images.pixels), (ch) => ch.charCodeAt(0));
  columns = Math.min(columns || Math.ceil(Math.sqrt(n)), n);
  const rows = Math.ceil(n / columns);
  const width = columns * (w + GAP) + GAP;
  const height = rows * (h + GAP) + GAP;
  const grid = new ImageData(width, height);
  grid.data.fill(255);
  for (let k = 0; k < n; k++) {
    const left = GAP + (k % columns) * (w + GAP);
    const top = GAP + Math.floor(k / columns) * (h + GAP);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const from = ((k * h + y) * w + x) * c;
        const to = ((top + y) * width + left + x) * 4;
        grid.data[to] = bytes[from];
        grid.data[to + 1] = bytes[from + (c === 3 ? 1 : 0)];
        grid.data[to + 2] = bytes[from + (c === 3 ? 2 : 0)];
      }
    }
  }
  const small = document.createElement("canvas");
  small.width = width;
  small.height = height;
  small.getContext("2d").putImageData(grid, 0, 0);
  canvas.width = width * scale;
  canvas.height = height * scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  canvas.dataset.draws = String(Number(canvas.dataset.draws || 0) + 1);
}

function scaleFor(images, pixels) {
  return Math.max(1, Math.floor(pixels / images.shape[1]));
}

function label() {
  return facts.classes ? Number($("label").value) : undefined;
}

function showFacts() {
  const options = facts.options || {};
  const rows = [["version", facts.version], ["architecture", options.arch],
                ["likelihood", options.likelihood], ["latent size", facts.latent_dim],
                ["images", facts.image_shape.join(" × ")]];
  for (const [name, value] of Object.entries(facts.validation || {})) {
    rows.push([`validation ${name.replaceAll("_", " ")}`, Number(value).toFixed(2)]);
  }
  rows.push(["map", `${facts.map.count} images of ${facts.map.split}`]);
  const list = $("facts");
  list.replaceChildren();
  for (const [name, value] of rows) {
    if (value === undefined || value === null) continue;
    const item = document.createElement("div");
    const term = document.createElement("dt");
    const detail = document.createElement("dd");
    term.textContent = name;
    detail.textContent = String(value);
    item.append(term, detail);
    list.append(item);
  }
  list.title = facts.note || `from ${facts.source}`;
  if (facts.classes) {
    $("label").replaceChildren(...facts.classes.map((name, index) => new Option(name, index)));
    $("class-picker").hidden = false;
  }
  $("n").max = facts.limits.max_samples;
  $("n").value = Math.min(64, facts.limits.max_samples);
  $("steps").max = facts.limits.max_steps;
  for (const id of ["index", "from", "to"]) $(id).max = facts.limits.images - 1;
}

const drawSamples = live(async () => {
  const answer = await api("sample", {n: Number($("n").value), seed: Number($("seed").value),
                                      label: label()});
  const columns = Math.ceil(Math.sqrt(answer.images.shape[0]));
  const width = columns * (answer.images.shape[2] + GAP) + GAP;
  paint($("samples"), answer.images, columns, Math.max(1, Math.floor(520 / width)));
});

function colour(index) {
  if (index === null || index === undefined) return "#1f77b4";
  return index < PALETTE.length ? PALETTE[index] : `hsl(${(index * 137.5) % 360}, 60%, 45%)`;
}

// The map canvas's pixel of a point, and back.
function toCanvas(point) {
  const {x0, x1, y0, y1} = atlas.extent;
  const canvas = $("map");
  return [(point[0] - x0) / (x1 - x0) * canvas.width, (y1 - point[1]) / (y1 - y0) * canvas.height];
}

function fromCanvas(event) {
  const {x0, x1, y0, y1} = atlas.extent;
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  const u = (event.clientX - box.left) / box.width;
  const v = (event.clientY - box.top) / box.height;
  return [x0 + u * (x1 - x0), y1 - v * (y1 - y0)];
}

function drawMap(cursor) {
  const canvas = $("map");
  const context = canvas.getContext("2d");
  if (!atlas.background) {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    atlas.points.forEach((point, i) => {
      const [x, y] = toCanvas(point);
      context.fillStyle = colour(atlas.labels ? atlas.labels[i] : null);
      context.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    atlas.background = context.getImageData(0, 0, canvas.width, canvas.height);
  }
  context.putImageData(atlas.background, 0, 0);
  if (cursor) {
    const [x, y] = toCanvas(cursor);
    context.strokeStyle = "#000";
    context.strokeRect(x - 4, y - 4, 8, 8);
  }
}

async function loadMap() {
  atlas = await api("map");
  const xs = atlas.points.map((p) => p[0]);
  const ys = atlas.points.map((p) => p[1]);
  const pad = (low, high) => {
    const margin = Math.max((high - low) * 0.05, 1e-3);
    return [low - margin, high + margin];
  };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  atlas.extent = {x0, x1, y0, y1};
  const [first, second] = atlas.explained.map((share) => `${Math.round(share * 100)} %`);
  $("map-caption").textContent = `posterior means of ${atlas.count} images, first two principal ` +
    `components (${first}, ${second} of the variance); point to decode, click to pick the nearest image`;
  drawMap();
  const legend = $("legend");
  legend.replaceChildren();
  if (atlas.labels && atlas.classes) {
    atlas.classes.forEach((name, index) => {
      const key = document.createElement("span");
      key.style.setProperty("--colour", colour(index));
      key.textContent = name;
      legend.append(key);
    });
  }
}

const decodePoint = live(async (point) => {
  const answer = await api("decode", {point, label: label()});
  drawMap(point);
  paint($("map-decoded"), answer.images, 1, scaleFor(answer.images, 136));
});

function nearest(point) {
  let best = 0;
  let distance = Infinity;
  atlas.points.forEach((p, i) => {
    const d = (p[0] - point[0]) ** 2 + (p[1] - point[1]) ** 2;
    if (d < distance) [best, distance] = [i, d];
  });
  return best;
}

function buildSliders() {
  const container = $("sliders");
  container.replaceChildren();
  const basis = $("basis").value;
  const count = facts.sliders[basis];
  for (let i = 0; i < count; i++) {
    const name = document.createElement("span");
    name.textContent = basis === "pca" ? `PC${i + 1}` : `z${i + 1}`;
    const slider = document.createElement("input");
    Object.assign(slider, {type: "range", min: -SLIDER_SPAN, max: SLIDER_SPAN, step: 0.05, value: 0});
    slider.className = "slider";
    const shown = document.createElement("output");
    shown.textContent = "0.00";
    slider.addEventListener("input", () => {
      shown.textContent = Number(slider.value).toFixed(2);
      traverse();
    });
    container.append(name, slider, shown);
  }
}

function offsets() {
  return [...document.querySelectorAll("#sliders .slider")].map((slider) => Number(slider.value));
}

const traverse = live(async () => {
  if (!base) return;
  const answer = await api("traverse", {z: base, basis: $("basis").value, offsets: offsets(),
                                        label: facts.classes ? label() : undefined});
  paint($("traversed"), answer.images, 1, scaleFor(answer.images, 136));
});

const choose = live(async (request) => {
  const answer = await api("encode", {...request, label: request.picture !== undefined ? label() : undefined});
  base = answer.z;
  baseLabel = answer.label;
  if (facts.classes && baseLabel !== null) $("label").value = String(baseLabel);
  paint($("original"), answer.image, 1, scaleFor(answer.image, 136));
  paint($("reconstruction"), answer.reconstruction, 1, scaleFor(answer.reconstruction, 136));
  traverse();
});

const interpolate = live(async () => {
  const answer = await api("interpolate", {a: {index: Number($("from").value)},
                                           b: {index: Number($("to").value)},
                                           steps: Number($("steps").value), label: label()});
  paint($("strip"), answer.images, answer.images.shape[0], scaleFor(answer.images, 68));
});

function readPicture(file) {
  const reader = new FileReader();
  reader.onload = () => choose({picture: String(reader.result).split(",", 2)[1] || ""});
  reader.onerror = () => showError(new Error(`Cannot read ${file.name}.`));
  reader.readAsDataURL(file);
}

async function start() {
  facts = await api("facts");
  showFacts();
  await loadMap();
  buildSliders();
  $("draw").addEventListener("click", () => drawSamples());
  for (const id of ["n", "seed"]) $(id).addEventListener("change", () => drawSamples());
  $("label").addEventListener("change", () => { drawSamples(); traverse(); interpolate(); });
  $("map").addEventListener("pointermove", (event) => decodePoint(fromCanvas(event)));
  $("map").addEventListener("click", (event) => {
    const index = nearest(fromCanvas(event));
    $("index").value = index;
    choose({index});
  });
  $("pick").addEventListener("click", () => choose({index: Number($("index").value)}));
  $("upload").addEventListener("change", (event) => {
    if (event.target.files.length) readPicture(event.target.files[0]);
  });
  $("basis").addEventListener("change", () => { buildSliders(); traverse(); });
  $("reset").addEventListener("click", () => { buildSliders(); traverse(); });
  $("interpolate").addEventListener("click", () => interpolate());
  drawSamples();
  choose({index: 0});
  interpolate();
}

start().catch(showError);
