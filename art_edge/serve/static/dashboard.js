// art-edge dashboard: one WebSocket brings the state (JSON) and each camera's annotated frame
// (binary: 2-byte header length, JSON header, JPEG). The socket reconnects on its own with
// back-off; on each connection the server sends the recent segments again, so a page that was
// away catches up.
"use strict";

const TIMELINE_SECONDS = 300; // each camera's timeline shows the last five minutes
const MAX_LISTED = 50; // recent actions listed

const tiles = new Map(); // camera name → {root, canvas}
const segments = new Map(); // "camera start_ts" → segment record
const clipsReady = new Set(); // clip file names written by the rig
let classes = [];
let retryMs = 500;
// For a person at the browser's console, and the tests: the live socket, connections made, frames shown.
window.artDashboard = { socket: null, connections: 0, frames: 0 };

function colour(label) {
  const i = classes.indexOf(label);
  const hue = ((i < 0 ? 0 : i) * 137.508) % 360; // golden angle: neighbours stay apart
  return `hsl(${hue.toFixed(0)}, 70%, 55%)`;
}

function setConnection(text, kind) {
  const badge = document.getElementById("connection");
  badge.textContent = text;
  badge.className = "badge" + (kind ? " " + kind : "");
}

function tileFor(name) {
  if (!tiles.has(name)) {
    const root = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
    root.dataset.camera = name;
    root.querySelector(".name").textContent = name;
    document.getElementById("tiles").appendChild(root);
    tiles.set(name, { root, canvas: root.querySelector("canvas.frame") });
  }
  return tiles.get(name);
}

// Frames are decoded off the main thread (createImageBitmap) and drawn on a canvas: a third less
// of the browser's CPU than swapping an <img>'s source (measured in headless Chromium).
function showFrame(buffer) {
  const view = new DataView(buffer);
  const length = view.getUint16(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 2, length)));
  const jpeg = new Blob([new Uint8Array(buffer, 2 + length)], { type: "image/jpeg" });
  createImageBitmap(jpeg).then((bitmap) => {
    const { canvas } = tileFor(header.camera);
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    canvas.dataset.frame = header.frame;
    window.artDashboard.frames += 1;
  });
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text; // an unchanged node is not repainted
}

function renderTopk(list, topk) {
  while (list.children.length < topk.length) {
    const li = document.createElement("li");
    li.innerHTML = '<div class="bar"><span></span><em></em></div><b></b>';
    list.appendChild(li);
  }
  while (list.children.length > topk.length) list.lastElementChild.remove();
  topk.forEach(([label, p], i) => {
    const li = list.children[i];
    const bar = li.querySelector("span");
    const style = `width:${(p * 100).toFixed(1)}%;background:${colour(label)}`;
    if (bar.dataset.style !== style) {
      bar.style.cssText = style;
      bar.dataset.style = style;
    }
    setText(li.querySelector("em"), label);
    setText(li.querySelector("b"), p.toFixed(2));
  });
}

function renderTimeline(timeline, camera, now, current) {
  const start = now - TIMELINE_SECONDS;
  const bars = [...segments.values()].filter((s) => s.camera === camera && s.end_ts >= start);
  if (current) bars.push({ ...current, camera, current: true, end_ts: Math.max(current.end_ts, now) });
  const marker = timeline.querySelector(".now");
  timeline.replaceChildren(
    marker,
    ...bars.map((s) => {
      const bar = document.createElement("div");
      bar.className = "segment" + (s.current ? " current" : "");
      bar.dataset.label = s.label;
      bar.title = `${s.label} ${new Date(s.start_ts * 1000).toLocaleTimeString()}`;
      const left = Math.max(0, (s.start_ts - start) / TIMELINE_SECONDS);
      const right = Math.min(1, (s.end_ts - start) / TIMELINE_SECONDS);
      bar.style.cssText = `left:${(left * 100).toFixed(2)}%;width:${(Math.max(0.003, right - left) * 100).toFixed(2)}%;background:${colour(s.label)}`;
      return bar;
    }),
  );
}

function renderCamera(cam, now) {
  const tile = tileFor(cam.name);
  const root = tile.root;
  root.classList.toggle("reconnecting", cam.reconnecting);
  root.classList.toggle("stale", cam.stale && !cam.reconnecting && !cam.ended);
  root.classList.toggle("ended", !!cam.ended);
  const state = cam.ended ? `ended (${cam.ended})` : cam.reconnecting ? "reconnecting…" : "no signal";
  setText(root.querySelector(".overlay-state"), state);
  setText(root.querySelector(".label"), cam.label ?? "(filling the window)");
  setText(root.querySelector(".score"), cam.score == null ? "" : cam.score.toFixed(2));
  renderTopk(root.querySelector(".topk"), cam.topk);
  setText(
    root.querySelector(".stats"),
    `${cam.fps.toFixed(1)} FPS · ${cam.frames} frames · dropped ${cam.dropped} · ` +
      `corrupt ${cam.corrupt} · reconnects ${cam.reconnects} · ${cam.status}`,
  );
  // the timeline moves by 1/300 of its width a second: redrawn once a second, or when it changed
  const key = JSON.stringify([segments.size, cam.current && [cam.current.label, cam.current.start_ts]]);
  if (key !== tile.timelineKey || now - (tile.timelineAt ?? 0) >= 1) {
    renderTimeline(root.querySelector(".timeline"), cam.name, now, cam.current);
    tile.timelineKey = key;
    tile.timelineAt = now;
  }
}

function playClip(segment) {
  const panel = document.getElementById("player-panel");
  const player = document.getElementById("player");
  panel.hidden = false;
  document.getElementById("player-title").textContent = `${segment.camera} · ${segment.label}`;
  player.src = "clips/" + encodeURIComponent(segment.clip);
  player.play().catch(() => {}); // muted autoplay is allowed; a refusal leaves the controls
}

function renderSegments() {
  const list = document.getElementById("segments");
  const recent = [...segments.values()].sort((a, b) => b.start_ts - a.start_ts).slice(0, MAX_LISTED);
  document.getElementById("no-segments").hidden = recent.length > 0;
  list.replaceChildren(
    ...recent.map((s) => {
      const li = document.createElement("li");
      li.dataset.camera = s.camera;
      li.dataset.label = s.label;
      li.innerHTML = '<span class="swatch"></span><span><b></b> <span class="what"></span><br><span class="when"></span></span>';
      li.querySelector(".swatch").style.background = colour(s.label);
      li.querySelector("b").textContent = s.track == null ? s.camera : `${s.camera} #${s.track}`;
      li.querySelector(".what").textContent = `${s.label} (${s.mean_score.toFixed(2)})`;
      li.querySelector(".when").textContent =
        `${new Date(s.start_ts * 1000).toLocaleTimeString()} · ${s.duration_s.toFixed(1)} s`;
      if (s.clip) {
        const button = document.createElement("button");
        button.className = "play";
        button.dataset.clip = s.clip;
        const ready = clipsReady.has(s.clip);
        button.textContent = ready ? "▶ clip" : "writing…";
        button.disabled = !ready;
        button.onclick = () => playClip(s);
        li.appendChild(button);
      }
      return li;
    }),
  );
}

function renderEngine(facts) {
  classes = facts.classes;
  const gate = facts.int8_gate;
  const rows = [
    ["model", `${facts.model.name ?? "?"} (${facts.model.backbone ?? "?"})`],
    ["input", `${facts.model.num_frames} frames × ${facts.model.image_size}²`],
    ["precision", facts.precision],
    ["backend", facts.backend],
    ["classes", `${facts.classes.length}: ${facts.classes.join(", ")}`],
  ];
  if (gate) {
    rows.push([
      "INT8 gate",
      `${gate.passed ? "passed" : "failed"} · top-1 agreement ${(gate.top1_agreement * 100).toFixed(1)} % · ` +
        `drop ${gate.top1_drop_points} points · ${gate.method}`,
    ]);
  }
  if (facts.created) rows.push(["built", facts.created]);
  document.getElementById("engine").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

function onState(state) {
  for (const s of state.segments) segments.set(`${s.camera} ${s.start_ts}`, s);
  for (const name of state.clips) clipsReady.add(name);
  for (const cam of state.cameras) renderCamera(cam, state.now);
  if (state.segments.length || state.clips.length) renderSegments();
  const fps = state.cameras.reduce((sum, c) => sum + c.fps, 0);
  // the page's own frames a camera: fewer than --web-fps when its CPU budget says so
  const page = state.page ? ` · page ${state.page.fps} frames/s a camera` : "";
  document.getElementById("summary").textContent =
    `${state.cameras.length} cameras · ${fps.toFixed(1)} FPS in all · ${segments.size} actions${page}`;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${location.pathname.replace(/[^/]*$/, "")}ws`);
  ws.binaryType = "arraybuffer";
  window.artDashboard.socket = ws;
  ws.onopen = () => {
    window.artDashboard.connections += 1;
    retryMs = 500;
    segments.clear();
    setConnection("live", "");
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") return showFrame(event.data);
    const message = JSON.parse(event.data);
    if (message.type === "engine") renderEngine(message);
    else if (message.type === "state") onState(message);
  };
  ws.onclose = () => {
    setConnection("reconnecting…", "warn");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}

connect();
