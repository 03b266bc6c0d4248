// vj control page: controls built from the registry schema the server sends over /ws; every change goes
// back as {"path": ..., "value": ...} and the engine's values come back live. No framework, no network
// beyond this server (the page must work on a stage network with no internet).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const controls = new Map();     // path -> {set(value)}
  const held = new Set();         // paths the user is dragging: incoming values wait until release
  let ws = null;
  let schema = null;
  let lastPhase = 0;
  let beats = 0;

  function send(path, value) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(value === undefined ? { path } : { path, value }));
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;   // never innerHTML: descriptions come from shader files
    return e;
  }

  function fmt(v) {
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : 3);
  }

  function toHex(rgba) {
    return "#" + rgba.slice(0, 3).map((x) => Math.round(Math.min(Math.max(x, 0), 1) * 255)
      .toString(16).padStart(2, "0")).join("");
  }

  function fromHex(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return [((n >> 16) & 255) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255, alpha];
  }

  function hold(input, path) {
    input.addEventListener("pointerdown", () => held.add(path));
    const release = () => held.delete(path);
    input.addEventListener("pointerup", release);
    input.addEventListener("pointercancel", release);
    input.addEventListener("change", release);
  }

  function slider(p, onInput) {
    // a round step (0.001, 0.01, ...) near 1/1000 of the range, so round values land exactly on the grid
    const step = p.kind === "float" ? Math.pow(10, Math.floor(Math.log10((p.max - p.min) / 1000 || 0.001))) : 1;
    const input = el("input", { type: "range", min: p.min, max: p.max, step, "data-path": p.path,
                                "aria-label": p.path });
    input.addEventListener("input", () => onInput(Number(input.value)));
    hold(input, p.path);
    return input;
  }

  function row(p, widget, out) {
    const r = el("div", { class: "row", "data-kind": p.kind });
    const name = p.path.split("/").pop();
    const label = el("label", { title: (p.description || p.path) + (p.unit ? " [" + p.unit + "]" : "") }, name);
    r.append(label, widget, out || el("output"));
    return r;
  }

  function makeControl(p) {
    const out = el("output");
    if (p.kind === "float" || p.kind === "int" || (p.kind === "enum" && !p.labels.length)) {
      const input = slider(p, (v) => { out.textContent = fmt(v); send(p.path, v); });
      controls.set(p.path, { set(v) { input.value = v; out.textContent = fmt(v) + (p.unit ? " " + p.unit : ""); } });
      return row(p, input, out);
    }
    if (p.kind === "enum") {
      const select = el("select", { "data-path": p.path });
      p.labels.forEach((lab, i) => select.append(el("option", { value: p.min + i }, lab)));
      select.addEventListener("change", () => send(p.path, Number(select.value)));
      controls.set(p.path, { set(v) { select.value = String(v); } });
      return row(p, select, out);
    }
    if (p.kind === "bool") {
      const box = el("input", { type: "checkbox", "data-path": p.path });
      box.addEventListener("change", () => send(p.path, box.checked));
      controls.set(p.path, { set(v) { box.checked = !!v; out.textContent = v ? "on" : "off"; } });
      return row(p, box, out);
    }
    if (p.kind === "color") {
      const pick = el("input", { type: "color", "data-path": p.path });
      let alpha = 1;
      pick.addEventListener("input", () => send(p.path, fromHex(pick.value, alpha)));
      controls.set(p.path, { set(v) { pick.value = toHex(v); alpha = v.length > 3 ? v[3] : 1; out.textContent = toHex(v); } });
      return row(p, pick, out);
    }
    if (p.kind === "point2d") {
      const xy = [0, 0];
      const pair = el("div", { class: "pair" });
      const inputs = [0, 1].map((i) => slider(p, (v) => { xy[i] = v; out.textContent = xy.map(fmt).join(", "); send(p.path, xy.slice()); }));
      inputs[1].setAttribute("data-path", p.path + "#y");
      pair.append(...inputs);
      controls.set(p.path, { set(v) { v.forEach((x, i) => { xy[i] = x; inputs[i].value = x; }); out.textContent = v.map(fmt).join(", "); } });
      return row(p, pair, out);
    }
    // event: a button that fires once
    const b = el("button", { type: "button", "data-path": p.path }, "fire");
    b.addEventListener("click", () => send(p.path, true));
    controls.set(p.path, { set() {} });
    return row(p, b, out);
  }

  function group(path) {
    const parts = path.split("/").filter(Boolean);
    return "/" + parts.slice(0, Math.max(1, parts.length - 1)).join("/");
  }

  // ---- mapping view: each projection output's points (/output/NAME/corner/N, /output/NAME/point/R/C) drawn on
  // its output frame, dragged with the pointer; the same params the sliders below move
  const SVG = "http://www.w3.org/2000/svg";
  const POINT = /^\/output\/([^/]+)\/(?:corner\/(\d+)|point\/(\d+)\/(\d+))$/;

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function buildMapping(params) {
    const box = $("mapping");
    box.replaceChildren();
    const outputs = new Map();      // name -> [{path, row, col, label}]
    for (const p of params) {
      const m = POINT.exec(p.path);
      if (!m || p.kind !== "point2d") continue;
      if (!outputs.has(m[1])) outputs.set(m[1], []);
      const corner = m[2] !== undefined;
      // a corner pin's 1..4 run around the frame: top left, top right, bottom right, bottom left
      const rc = corner ? [[0, 0], [0, 1], [1, 1], [1, 0]][Number(m[2]) - 1] : [Number(m[3]) - 1, Number(m[4]) - 1];
      outputs.get(m[1]).push({ path: p.path, row: rc[0], col: rc[1], label: corner ? m[2] : m[3] + "," + m[4] });
    }
    box.hidden = outputs.size === 0;
    for (const [name, points] of outputs) {
      const fig = el("figure", { class: "output-map", "data-output": name });
      const svg = svgEl("svg", { viewBox: "-0.15 -0.15 1.3 1.3", "data-output": name });
      svg.append(svgEl("rect", { x: 0, y: 0, width: 1, height: 1, class: "frame" }));
      const lines = svgEl("g", { class: "mesh" });
      svg.append(lines);
      const at = new Map();         // "row,col" -> [x, y]
      const redraw = () => {
        lines.replaceChildren();
        for (const q of points) {
          const a = at.get(q.row + "," + q.col);
          for (const [dr, dc] of [[0, 1], [1, 0]]) {
            const b = at.get((q.row + dr) + "," + (q.col + dc));
            if (a && b) lines.append(svgEl("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }));
          }
        }
      };
      for (const q of points) {
        const g = svgEl("g", { class: "handle", "data-path": q.path });
        const dot = svgEl("circle", { r: 0.035 });
        const text = svgEl("text", { dx: 0.05, dy: 0.02 });
        text.textContent = q.label;
        g.append(dot, text);
        svg.append(g);
        const place = (v) => {
          at.set(q.row + "," + q.col, v);
          g.setAttribute("transform", `translate(${v[0]} ${v[1]})`);
          redraw();
        };
        const toSvg = (ev) => {
          const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse());
          return [Math.min(Math.max(pt.x, -1), 2), Math.min(Math.max(pt.y, -1), 2)];
        };
        g.addEventListener("pointerdown", (ev) => { held.add(q.path); g.setPointerCapture(ev.pointerId); ev.preventDefault(); });
        g.addEventListener("pointermove", (ev) => {
          if (!held.has(q.path)) return;
          const v = toSvg(ev);
          place(v);
          send(q.path, v);
        });
        const release = () => held.delete(q.path);
        g.addEventListener("pointerup", release);
        g.addEventListener("pointercancel", release);
        const slider = controls.get(q.path);       // the sliders' control for this path also moves the handle
        controls.set(q.path, { set(v) { if (slider) slider.set(v); place(v); } });
      }
      fig.append(svg, el("figcaption", {}, name));
      box.append(fig);
    }
  }

  function buildParams(params) {
    const main = $("params");
    main.replaceChildren();
    controls.clear();
    const sets = new Map();
    for (const p of params) {
      const g = group(p.path);
      if (!sets.has(g)) {
        const fs = el("fieldset", { "data-group": g });
        fs.append(el("legend", {}, g));
        sets.set(g, fs);
        main.append(fs);
      }
      sets.get(g).append(makeControl(p));
    }
  }

  function buildPresets(presets, active) {
    const box = $("presets");
    box.replaceChildren();
    for (const name of presets) {
      const b = el("button", { type: "button", class: "preset", "data-preset": name }, name);
      b.addEventListener("click", () => send("/cmd/preset/load", name));
      box.append(b);
    }
    markPreset(active);
  }

  function markPreset(active) {
    $("preset-name").textContent = active || "";
    const key = String(active || "").toLowerCase().replace(/[\s_]+/g, "-");
    for (const b of document.querySelectorAll("button.preset")) {
      b.classList.toggle("active", b.dataset.preset.toLowerCase().replace(/[\s_]+/g, "-") === key);
    }
  }

  function buildCommands(commands) {
    const box = $("commands");
    box.replaceChildren();
    for (const c of commands) {
      // preset/load has its own buttons, save its form, tap the big button in the header
      if (["/cmd/preset/load", "/cmd/preset/save", "/cmd/tap"].includes(c.path)) continue;
      if (c.args && !c.args.includes("optional")) continue;
      const b = el("button", { type: "button", class: "command", "data-cmd": c.path, title: c.description },
                   c.path.replace("/cmd/", ""));
      b.addEventListener("click", () => send(c.path));
      box.append(b);
    }
  }

  function onSchema(msg) {
    schema = msg;
    buildParams(msg.params);
    buildMapping(msg.params);
    buildPresets(msg.presets, msg.preset);
    buildCommands(msg.commands);
    const img = $("preview");
    img.hidden = !msg.preview;
    if (msg.preview && !img.dataset.running) startPreview(img);
  }

  function onValues(values) {
    for (const [path, v] of Object.entries(values)) {
      const c = controls.get(path);
      if (c && !held.has(path) && v !== null) c.set(v);
    }
  }

  function onFeatures(msg) {
    const f = msg.features;
    $("bpm").textContent = f.bpm > 0 ? f.bpm.toFixed(1) + " BPM" : "--- BPM";
    const phase = Number(f.beat_phase) || 0;
    if (f.beat > 0.5 || phase < lastPhase - 0.5) {
      beats += 1;
      $("beat").dataset.beats = String(beats);
    }
    lastPhase = phase;
    $("beat").style.opacity = String(0.1 + 0.9 * Math.max(0, 1 - phase * 4));
    if (msg.preset !== undefined && msg.preset !== $("preset-name").textContent) markPreset(msg.preset);
  }

  function startPreview(img) {
    img.dataset.running = "1";
    const next = () => setTimeout(() => { img.src = "preview?t=" + Date.now(); }, 250);
    img.addEventListener("load", next);
    img.addEventListener("error", () => setTimeout(next, 1000));
    img.src = "preview?t=" + Date.now();
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/ws");
    $("status").textContent = "connecting";
    $("status").dataset.state = "connecting";
    ws.addEventListener("open", () => { $("status").textContent = "live"; $("status").dataset.state = "open"; });
    ws.addEventListener("close", () => {
      $("status").textContent = "disconnected";
      $("status").dataset.state = "closed";
      setTimeout(connect, 1000);
    });
    ws.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "schema") onSchema(msg);
      else if (msg.type === "values" && schema) onValues(msg.values);
      else if (msg.type === "features") onFeatures(msg);
    });
  }

  $("tap").addEventListener("click", () => send("/cmd/tap"));
  $("save").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("save-name").value.trim();
    if (name) send("/cmd/preset/save", name);
  });
  connect();
})();
