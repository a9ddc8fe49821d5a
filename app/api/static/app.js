// The web page: choose or drop an X-ray, POST it to /predict, show the answer.
// Plain JavaScript, no build step, no third-party code.
"use strict";

const $ = (id) => document.getElementById(id);
const HINTS = {
  413: "The file is too large for this service.",
  415: "This is not a file type the service reads. Send a JPEG, PNG or DICOM X-ray.",
  422: "The file could not be used as a chest X-ray.",
  503: "The model is not loaded yet. Try again in a minute.",
};

function show(id, text) {
  const node = $(id);
  node.textContent = text;
  node.hidden = !text;
}

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

async function loadModel() {
  try {
    const response = await fetch("/model");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const card = await response.json();
    $("model-version").textContent = card.version;
    $("model-threshold").textContent = percent(card.threshold);
  } catch (err) {
    $("model-version").textContent = "not loaded";
    $("model-threshold").textContent = "–";
  }
}

async function errorMessage(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (err) {
    detail = response.statusText;
  }
  const hint = HINTS[response.status] || "The service could not answer.";
  return `${hint} (HTTP ${response.status}: ${detail})`;
}

function render(result, fileName) {
  const label = $("label");
  // Not a chest X-ray: its own state, never shown as a result (no label, no heat map).
  const outside = result.in_distribution === false;
  label.textContent = outside ? "Not a chest X-ray" : result.label;
  label.className = outside ? "label OUT_OF_DISTRIBUTION" : `label ${result.label}`;
  $("file-name").textContent = fileName;
  $("probability").textContent = percent(result.probability);
  $("threshold").textContent = percent(result.threshold);
  $("probability-fill").style.width = percent(result.probability);
  $("threshold-mark").style.left = `calc(${percent(result.threshold)} - 1px)`;
  $("model-version").textContent = result.model_version;
  $("model-threshold").textContent = percent(result.threshold);

  const dicom = result.dicom;
  show("dicom-info", dicom
    ? `DICOM: ${[dicom.modality, dicom.view_position, dicom.body_part_examined, dicom.transfer_syntax]
        .filter(Boolean).join(" · ")}`
    : "");

  const original = result.preview_png ? `data:image/png;base64,${result.preview_png}` : "";
  $("original-img").src = original;
  $("overlay-base").src = original;
  const overlay = $("overlay-img");
  if (result.gradcam_overlay) {
    overlay.src = `data:${result.gradcam_overlay_type || "image/jpeg"};base64,${result.gradcam_overlay}`;
    overlay.hidden = false;
    $("overlay-missing").hidden = true;
  } else {
    overlay.removeAttribute("src");
    overlay.hidden = true;
    $("overlay-missing").hidden = false;
  }
  applyOpacity();

  const list = $("warnings");
  list.replaceChildren(...result.warnings.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  $("result").hidden = false;
}

async function predict(file) {
  show("error", "");
  $("result").hidden = true;
  show("status", `Analysing ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch("/predict?gradcam=true&preview=true", { method: "POST", body: form });
    if (!response.ok) {
      show("error", await errorMessage(response));
      return;
    }
    render(await response.json(), file.name);
  } catch (err) {
    show("error", `The service could not be reached (${err.message}). Check your connection and try again.`);
  } finally {
    show("status", "");
  }
}

function applyOpacity() {
  const value = $("opacity").value;
  $("overlay-img").style.opacity = value / 100;
  $("opacity-value").textContent = `${value}%`;
}

function setUp() {
  const input = $("file-input");
  const zone = $("drop-zone");
  input.addEventListener("change", () => {
    if (input.files.length) predict(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer.files;
    if (files.length) predict(files[0]);
  });
  $("opacity").addEventListener("input", applyOpacity);
  loadModel();
}

setUp();
