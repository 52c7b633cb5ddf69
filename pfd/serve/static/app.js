"use strict";
// The page's behaviour: read /api/health, send a photo (or a gallery image number) to /api/search, draw
// the answer. Plain DOM and fetch, no framework, nothing loaded from another host.
const $ = (id) => document.getElementById(id);
const KEYPOINT_COLOURS = { visible: "rgb(0, 230, 255)", occluded: "rgb(255, 0, 255)" };
const QUERY_HEIGHT = 256; // px of the query canvas
let health = null;

async function readJson(response) {
  try { return await response.json(); } catch (e) { return { error: `${response.status} ${response.statusText}` }; }
}

async function loadHealth() {
  const response = await fetch("/api/health");
  health = await readJson(response);
  if (!response.ok) { showError(response.status, health.error); return; }
  const fallback = health.pose_fallback ? `, else ${health.pose_fallback}` : "";
  $("health").textContent = `${health.model} (${health.weights}), config ${health.config_hash}, ` +
    `${health.gallery_size} gallery images, ${health.device}, poses: ${health.upload_pose_backend}${fallback}`;
  $("k").max = health.max_k;
  $("k").value = Math.min(10, health.max_k);
  showSamples();
}

function showSamples() {
  const count = Math.min(8, health.gallery_size);
  const picked = new Set();
  while (picked.size < count) picked.add(Math.floor(Math.random() * health.gallery_size));
  $("samples").replaceChildren(...[...picked].map((number) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `gallery image ${number}`;
    button.dataset.gallery = number;
    const img = document.createElement("img");
    img.src = `/api/gallery/${number}`;
    img.alt = `gallery image ${number}`;
    button.append(img);
    button.addEventListener("click", () => search({ gallery: String(number) }, img.src));
    return button;
  }));
}

function showError(status, message) {
  $("status").textContent = `error ${status}: ${message}`;
  $("status").className = "error";
}

async function search(fields, previewUrl) {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append("k", $("k").value);
  if ($("camera").value !== "") form.append("camera", $("camera").value);
  if ($("keypoints").value.trim()) form.append("keypoints", $("keypoints").value.trim());
  if ($("cameras").value.trim()) form.append("cameras", $("cameras").value.trim());
  if ($("exclude-camera").value !== "") form.append("exclude_camera", $("exclude-camera").value);
  // datetime-local is the browser's local time: sent as an ISO 8601 instant in UTC
  for (const key of ["since", "until"]) {
    if ($(key).value) form.append(key, new Date($(key).value).toISOString());
  }
  $("status").textContent = "searching\u2026";
  $("status").className = "";
  document.body.dataset.state = "searching";
  const response = await fetch("/api/search", { method: "POST", body: form });
  const answer = await readJson(response);
  if (!response.ok) { showError(response.status, answer.error); document.body.dataset.state = "error"; return; }
  await drawQuery(previewUrl, answer.query);
  showResults(answer);
  document.body.dataset.state = "done";
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = url;
  });
}

async function drawQuery(url, query) {
  const img = await loadImage(url);
  const scale = QUERY_HEIGHT / img.naturalHeight;
  const canvas = $("query-canvas");
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = QUERY_HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  for (const [x, y, confidence] of query.keypoints || []) {
    const visible = confidence >= query.keypoint_threshold;
    if (confidence <= 0 && x === 0 && y === 0) continue; // "not found" points sit at the origin
    ctx.beginPath();
    ctx.arc(x * scale, y * scale, 4, 0, 2 * Math.PI);
    ctx.fillStyle = KEYPOINT_COLOURS[visible ? "visible" : "occluded"];
    ctx.fill();
    ctx.strokeStyle = "#000";
    ctx.stroke();
  }
  const visible = query.visible_keypoints === null ? "poses computed inside the model"
    : `${query.visible_keypoints} of 17 keypoints visible (${query.pose})`;
  const id = query.id >= 0 ? `id ${query.id}` : "id unknown";
  $("query-info").textContent = `${query.name}: ${id}, camera ${query.camera >= 0 ? query.camera : "unknown"}; ${visible}`;
  $("query-pose").textContent = `keypoints: ${query.pose_reason}`; // which keypoints were used, and why
  $("query").hidden = false;
}

function showResults(answer) {
  const queryId = answer.query.id;
  $("results").replaceChildren(...answer.matches.map((match) => {
    const item = document.createElement("li");
    item.dataset.id = match.id;
    item.dataset.camera = match.camera;
    if (queryId >= 0 && match.id >= 0) item.className = match.id === queryId ? "right" : "wrong";
    const img = document.createElement("img");
    img.src = match.url;
    img.alt = match.path;
    const caption = document.createElement("div");
    caption.textContent = `#${match.rank}  id ${match.id}  cam ${match.camera}  d ${match.distance.toFixed(3)}`;
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = match.path;
    item.append(img, caption, path);
    return item;
  }));
  $("status").textContent = `top ${answer.matches.length} in ${answer.elapsed_ms} ms`;
}

function searchFile(file) {
  if (file) search({ image: file }, URL.createObjectURL(file));
}

$("file").addEventListener("change", () => searchFile($("file").files[0]));
$("shuffle").addEventListener("click", showSamples);
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  searchFile(event.dataTransfer.files[0]);
});
loadHealth();
