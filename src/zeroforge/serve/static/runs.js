// Live plots of a run's metrics.csv: every numeric column against "step", redrawn every 2 seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2f5bd3", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285", "#c2255c"];
const shown = new Set(); // the columns ticked

function headers() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function checkboxes(names) {
  const box = $("columns");
  if (box.dataset.names === names.join(",")) return;
  box.dataset.names = names.join(",");
  box.textContent = "";
  names.forEach((name) => {
    if (shown.size === 0 || /loss/.test(name)) shown.add(name);
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = shown.has(name);
    input.addEventListener("change", () => { input.checked ? shown.add(name) : shown.delete(name); refresh(); });
    label.append(input, " " + name + " ");
    box.appendChild(label);
  });
}

function draw(columns) {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 48;
  ctx.clearRect(0, 0, W, H);
  const x = columns.step || (columns[Object.keys(columns)[0]] || []).map((_, i) => i);
  canvas.dataset.points = x.length; // rows plotted (read by the browser test)
  const names = Object.keys(columns).filter((n) => n !== "step" && shown.has(n));
  const values = names.flatMap((n) => columns[n].filter((v) => v !== null && isFinite(v)));
  if (!x.length || !values.length) return;
  const x0 = Math.min(...x), x1 = Math.max(...x) || 1;
  let y0 = Math.min(...values), y1 = Math.max(...values);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (v) => pad + (W - 2 * pad) * (v - x0) / ((x1 - x0) || 1);
  const sy = (v) => H - pad - (H - 2 * pad) * (v - y0) / (y1 - y0);
  ctx.strokeStyle = "#d9dde4"; ctx.fillStyle = "#6b7280"; ctx.font = "12px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, sy(v)); ctx.lineTo(W - pad, sy(v)); ctx.stroke();
    ctx.fillText(v.toPrecision(3), 4, sy(v) + 4);
  }
  ctx.fillText("step " + x0, pad, H - 18); ctx.fillText("step " + x1, W - pad - 60, H - 18);
  names.forEach((name, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    columns[name].forEach((v, i) => {
      if (v === null || !isFinite(v)) return;
      pen ? ctx.lineTo(sx(x[i]), sy(v)) : ctx.moveTo(sx(x[i]), sy(v));
      pen = true;
    });
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle; ctx.fillText(name, W - pad - 140, pad + 16 * k);
  });
}

async function refresh() {
  try {
    const { runs } = await getJSON("/api/runs");
    const select = $("run");
    if (select.dataset.runs !== runs.join(",")) {
      const current = select.value;
      select.dataset.runs = runs.join(",");
      select.textContent = "";
      runs.forEach((r) => select.add(new Option(r, r, false, r === current)));
    }
    if (!select.value) return;
    const { columns } = await getJSON("/api/runs/" + encodeURIComponent(select.value));
    checkboxes(Object.keys(columns).filter((n) => n !== "step"));
    draw(columns);
    $("error").textContent = "";
  } catch (err) { $("error").textContent = err.message; }
}

$("run").addEventListener("change", refresh);
refresh();
setInterval(refresh, 2000);
