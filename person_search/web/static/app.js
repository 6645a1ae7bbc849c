// person_search operator console. Plain JavaScript, no build step, nothing from other hosts.
// Everything from a user or from the graph is put into the page as text (textContent and
// attributes), never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FILTERS = ["camera", "last_min", "since", "until", "min_score", "top_k"];
const SEARCH_TIMEOUT_MS = 30000;
const TILE_MS = 250;
const state = { info: null, matches: [], tiles: new Map(), lastQuery: "" };

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function api(path, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs || 10000);
  let r;
  try {
    r = await fetch(path, { signal: ctl.signal, cache: "no-store", credentials: "same-origin" });
  } catch (e) {
    if (e.name === "AbortError") throw new Error(`no answer from the console within ${Math.round((timeoutMs || 10000) / 1000)} s`);
    throw new Error("the console cannot be reached (is person-search web still running?)");
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
  return body;
}

function fmtTime(ns) {
  if (!ns || ns <= 0) return "-";
  const d = new Date(ns / 1e6);
  const today = new Date();
  const t = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === today.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
}

function fmtDuration(ns) {
  const s = ns / 1e9;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function showError(box, message) {
  box.textContent = message || "";
  box.hidden = !message;
}

// ---- search ------------------------------------------------------------------------------
function formParams() {
  const p = new URLSearchParams();
  p.set("q", $("#q").value.trim());
  for (const name of FILTERS) {
    const v = $("#" + name).value.trim();
    if (!v) continue;
    if (name === "since" || name === "until") {
      const d = new Date(v);
      if (!isNaN(d)) p.set(name, d.toISOString());
    } else {
      p.set(name, v);
    }
  }
  return p;
}

function fillForm(params) {
  $("#q").value = params.get("q") || "";
  for (const name of FILTERS) {
    const v = params.get(name);
    if (v === null) continue;
    if (name === "since" || name === "until") {
      const d = new Date(isNaN(Number(v)) ? v : Number(v) * 1000);
      if (!isNaN(d)) $("#" + name).value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    } else {
      const input = $("#" + name);
      if (input.tagName === "SELECT" && v && ![...input.options].some((o) => o.value === v)) {
        input.append(el("option", { value: v }, v));  // a camera not seen (yet) by this page
      }
      input.value = v;
    }
    if (name !== "top_k") $("#filters").open = true;
  }
}

async function runSearch(params, { push = true } = {}) {
  const q = params.get("q") || "";
  state.lastQuery = q;
  closeTrack(false);
  showError($("#error"), "");
  $("#status").textContent = `Searching for “${q}” …`;
  $("#results").replaceChildren();
  document.body.dataset.searchState = "running";
  if (push) history.replaceState(null, "", "/?" + params.toString());
  try {
    const data = await api("/api/search?" + params.toString(), SEARCH_TIMEOUT_MS);
    if (q !== state.lastQuery) return;
    state.matches = data.matches;
    const n = data.count;
    $("#status").textContent = `${n} ${n === 1 ? "match" : "matches"} for “${data.query}” (${data.elapsed_ms.toFixed(0)} ms)`;
    renderResults($("#results"), data.matches);
    document.body.dataset.searchState = "done";
  } catch (e) {
    $("#status").textContent = `No answer for “${q}”.`;
    showError($("#error"), e.message);
    document.body.dataset.searchState = "error";
  }
}

function renderResults(box, matches) {
  box.replaceChildren();
  for (const m of matches) {
    const card = el("article", { class: "result", tabindex: "0", "data-track-id": m.track_id,
                                 "data-camera": m.camera, "data-score": m.score,
                                 "data-last-seen": m.last_seen_ns });
    if (m.person_id !== undefined && m.person_id !== null) card.setAttribute("data-person-id", m.person_id);
    const img = el("img", { class: "crop", alt: `track ${m.track_id} on ${m.camera}`, loading: "eager" });
    if (m.crop_url) img.src = m.crop_url;
    card.append(img);
    const meta = el("div", { class: "meta" });
    meta.append(el("div", { class: "score" }, m.score.toFixed(3)));
    let who = `${m.camera} · track ${m.track_id}`;
    if (m.person_id !== undefined && m.person_id !== null) who += ` · person ${m.person_id}`;
    meta.append(el("div", { class: "who" }, who));
    meta.append(el("div", { class: "when" }, `${fmtTime(m.first_seen_ns)} – ${fmtTime(m.last_seen_ns)}`));
    card.append(meta);
    const open = () => openTrack(m.camera, m.track_id);
    card.addEventListener("click", open);
    card.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
    box.append(card);
  }
  if (!matches.length) box.append(el("p", { class: "muted" }, "Nobody matched. Try fewer filters or other words."));
}

// ---- one track ---------------------------------------------------------------------------
async function openTrack(camera, trackId, { push = true } = {}) {
  const sec = $("#track");
  sec.hidden = false;
  document.body.classList.add("track-open");
  sec.dataset.camera = camera;
  sec.dataset.trackId = trackId;
  sec.dataset.state = "loading";
  $("#track-title").textContent = `${camera} · track ${trackId}`;
  showError($("#track-error"), "");
  $("#timeline").replaceChildren();
  $("#track-facts").replaceChildren();
  if (push) history.replaceState(null, "", location.pathname + location.search + `#track=${encodeURIComponent(camera)}/${trackId}`);
  try {
    const data = await api(`/api/tracks/${encodeURIComponent(camera)}/${encodeURIComponent(trackId)}`);
    const t = data.track;
    for (const [id, url] of [["#track-crop", t.crop_url], ["#track-frame", t.frame_url]]) {
      const img = $(id);
      if (url) { img.src = url; img.hidden = false; } else { img.removeAttribute("src"); img.hidden = true; }
    }
    const facts = $("#track-facts");
    const add = (k, v) => { facts.append(el("dt", {}, k)); facts.append(el("dd", {}, v)); };
    if (t.score !== undefined) add("score", t.score.toFixed(3));
    add("camera", t.camera);
    if (t.person_id !== undefined && t.person_id !== null) add("person", `${t.person_id} (tracks ${(t.person_track_ids || []).join(", ")})`);
    if (t.first_seen_ns) add("first seen", fmtTime(t.first_seen_ns));
    if (t.last_seen_ns) add("last seen", fmtTime(t.last_seen_ns));
    if (t.first_seen_ns && t.last_seen_ns) add("seen for", fmtDuration(t.last_seen_ns - t.first_seen_ns));
    if (t.box) add("box", t.box.map((v) => v.toFixed(0)).join(", "));
    $("#track-count").textContent = data.timeline.length ? `(${data.timeline.length} moments)` :
      "(not seen by this console since it started)";
    for (const p of data.timeline) {
      const fig = el("figure", { class: "moment", "data-stamp": p.stamp_ns });
      fig.append(el("img", { class: "moment-crop", src: p.crop_url, alt: "crop" }));
      if (p.frame_url) fig.append(el("img", { class: "moment-frame", src: p.frame_url, alt: "frame" }));
      fig.append(el("figcaption", {}, fmtTime(p.stamp_ns)));
      $("#timeline").append(fig);
    }
    $("#find-similar").hidden = !(state.info && state.info.find_similar);
    sec.dataset.state = "done";
  } catch (e) {
    showError($("#track-error"), e.message);
    sec.dataset.state = "error";
  }
}

function closeTrack(push = true) {
  $("#track").hidden = true;
  document.body.classList.remove("track-open");
  if (push && location.hash) history.replaceState(null, "", location.pathname + location.search);
}

async function findSimilar() {
  const sec = $("#track");
  const camera = sec.dataset.camera, trackId = sec.dataset.trackId;
  closeTrack();
  $("#status").textContent = `Looking for people similar to ${camera} · track ${trackId} …`;
  showError($("#error"), "");
  $("#results").replaceChildren();
  try {
    const p = new URLSearchParams({ camera, track_id: trackId });
    const data = await api("/api/similar?" + p.toString(), SEARCH_TIMEOUT_MS);
    $("#status").textContent = `${data.count} similar to ${camera} · track ${trackId}`;
    renderResults($("#results"), data.matches);
  } catch (e) {
    showError($("#error"), e.message);
  }
}

// ---- cameras -----------------------------------------------------------------------------
async function refreshCameras() {
  let data;
  try { data = await api("/api/cameras"); } catch (e) { return; }
  const box = $("#tiles");
  const select = $("#camera");
  for (const cam of data.cameras) {
    if (!state.tiles.has(cam.name)) {
      if (!state.tiles.size) box.replaceChildren();
      const tile = el("figure", { class: "tile", "data-camera": cam.name, "data-seq": "0" });
      const img = el("img", { class: "live", alt: `live view of ${cam.name}` });
      const cap = el("figcaption", {}, cam.name);
      tile.append(img, cap);
      box.append(tile);
      state.tiles.set(cam.name, { tile, img, cap, seq: 0, url: null });
      pollTile(cam.name);
      if (![...select.options].some((o) => o.value === cam.name)) select.append(el("option", { value: cam.name }, cam.name));
    }
    const t = state.tiles.get(cam.name);
    const stale = cam.age_s === null || cam.age_s > 3;
    t.tile.classList.toggle("stale", stale);
    t.cap.textContent = `${cam.name} · ${cam.fps.toFixed(1)} fps` + (cam.age_s === null ? " · no frame yet" : stale ? ` · last frame ${cam.age_s.toFixed(0)} s ago` : "");
  }
}

async function pollTile(name) {
  const t = state.tiles.get(name);
  for (;;) {
    try {
      const r = await fetch(`/api/cameras/${encodeURIComponent(name)}/latest.jpg?after=${t.seq}`,
                            { cache: "no-store", credentials: "same-origin" });
      if (r.status === 200) {
        const blob = await r.blob();
        const url = URL.createObjectURL(blob);
        t.img.src = url;
        if (t.url) URL.revokeObjectURL(t.url);
        t.url = url;
        t.seq = Number(r.headers.get("X-Frame-Seq") || t.seq);
        t.tile.dataset.seq = String(t.seq);
      }
    } catch (e) { /* the console went away: keep trying */ }
    await new Promise((res) => setTimeout(res, document.hidden ? 2000 : TILE_MS));
  }
}

// ---- health ------------------------------------------------------------------------------
async function refreshHealth() {
  const badge = $("#graph-status");
  let h;
  try {
    h = await api("/api/health");
  } catch (e) {
    badge.className = "badge bad";
    badge.textContent = "console unreachable";
    return;
  }
  const overall = h.query_service_ready ? h.status : "bad";
  badge.className = `badge ${overall}`;
  badge.textContent = !h.query_service_ready ? "graph: query service down" : `graph: ${h.status}`;
  document.body.dataset.health = overall;
  $("#gallery-size").textContent = h.gallery_size === null ? "" : `· gallery ${h.gallery_size}`;
  const rows = h.stages.map((s) => {
    const v = s.values;
    const tr = el("tr", { class: `stage ${s.status}`, "data-stage": s.name, "data-status": s.status, title: s.message });
    tr.append(el("td", {}, s.name), el("td", {}, v.rate_hz !== undefined ? `${v.rate_hz} Hz` : "-"),
              el("td", {}, v.drops !== undefined ? v.drops : "-"),
              el("td", {}, v.age_p50_ms !== undefined ? `${v.age_p50_ms} ms` : "-"),
              el("td", {}, s.status === "stalled" ? `stalled ${s.report_age_s.toFixed(0)} s` : `${s.report_age_s.toFixed(1)} s ago`));
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    tr.append(el("td", { colspan: "5", class: "muted" }, "no /diagnostics received yet"));
    rows.push(tr);
  }
  $("#stages tbody").replaceChildren(...rows);
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  $("#search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if ($("#q").value.trim()) runSearch(formParams());
  });
  $("#track-close").addEventListener("click", () => closeTrack());
  $("#find-similar").addEventListener("click", findSimilar);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeTrack(); });
  try { state.info = await api("/api/info"); } catch (e) { showError($("#error"), e.message); }
  await refreshCameras();
  refreshHealth();
  setInterval(refreshCameras, 2000);
  setInterval(refreshHealth, 1000);
  const params = new URLSearchParams(location.search);
  fillForm(params);
  const m = /^#track=([^/]+)\/(\d+)$/.exec(location.hash);
  if (params.get("q")) await runSearch(params, { push: false });
  if (m) openTrack(decodeURIComponent(m[1]), Number(m[2]), { push: false });
}

document.addEventListener("DOMContentLoaded", start);
