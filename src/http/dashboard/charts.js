// Line charts on a <canvas>, written by hand (no library): linear or log y axis, a legend,
// and as many series as there are layers. Each draw records what it plotted on the canvas
// as data attributes (`data-points`: the most points of any series, `data-series`), so that
// a test can see the chart change without reading pixels.

export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const MARGIN = { left: 58, right: 14, top: 28, bottom: 34 };
const FONT = "11px system-ui, sans-serif";

/**
 * Draws `series` ([{label, color, points: [[x, y], …]}]) on `canvas`. Options: `logY`,
 * `xLabel`, `yLabel`, `empty` (the text shown while there is nothing to draw). Points whose y
 * is not finite (or not positive on a log axis) are skipped.
 */
export function drawLineChart(canvas, series, options = {}) {
  const { logY = false, xLabel = "", yLabel = "", empty = "no data yet" } = options;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = FONT;

  const usable = series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0)),
  }));
  const most = Math.max(0, ...usable.map((s) => s.points.length));
  canvas.dataset.points = String(most);
  canvas.dataset.series = String(usable.filter((s) => s.points.length > 0).length);
  if (most === 0) {
    ctx.fillStyle = "#888";
    ctx.textAlign = "center";
    ctx.fillText(empty, width / 2, height / 2);
    return;
  }

  const fy = logY ? Math.log10 : (v) => v;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const s of usable) {
    for (const [x, y] of s.points) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, fy(y)); y1 = Math.max(y1, fy(y));
    }
  }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= logY ? 0.5 : Math.abs(y0) * 0.1 || 1; y1 += logY ? 0.5 : Math.abs(y1) * 0.1 || 1; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  if (!logY && y0 < 0 && y0 + pad >= 0) y0 = 0; // losses start at the axis, not below it

  const plot = { x: MARGIN.left, y: MARGIN.top, w: width - MARGIN.left - MARGIN.right, h: height - MARGIN.top - MARGIN.bottom };
  const px = (x) => plot.x + ((x - x0) / (x1 - x0)) * plot.w;
  const py = (v) => plot.y + plot.h - ((v - y0) / (y1 - y0)) * plot.h;

  // Grid and tick labels.
  ctx.strokeStyle = "#e4e4e4";
  ctx.fillStyle = "#555";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5)) {
    const y = Math.round(py(t)) + 0.5;
    line(ctx, plot.x, y, plot.x + plot.w, y);
    ctx.fillText(logY ? formatPower(t) : formatNumber(t), plot.x - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
    const x = Math.round(px(t)) + 0.5;
    line(ctx, x, plot.y, x, plot.y + plot.h);
    ctx.fillText(formatNumber(t), x, plot.y + plot.h + 5);
  }
  ctx.strokeStyle = "#999";
  ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w, plot.h);
  if (xLabel) ctx.fillText(xLabel, plot.x + plot.w / 2, height - 14);
  if (yLabel) {
    ctx.save();
    ctx.translate(12, plot.y + plot.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(yLabel, 0, 0);
    ctx.restore();
  }

  // The lines, at most about two points per pixel column.
  ctx.save();
  ctx.beginPath();
  ctx.rect(plot.x, plot.y, plot.w, plot.h);
  ctx.clip();
  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  usable.forEach((s, i) => {
    const pts = thin(s.points, Math.max(2, Math.floor(plot.w * 2)));
    ctx.strokeStyle = s.color || PALETTE[i % PALETTE.length];
    ctx.beginPath();
    pts.forEach(([x, y], j) => (j === 0 ? ctx.moveTo(px(x), py(fy(y))) : ctx.lineTo(px(x), py(fy(y)))));
    if (pts.length === 1) ctx.arc(px(pts[0][0]), py(fy(pts[0][1])), 2, 0, 2 * Math.PI);
    ctx.stroke();
  });
  ctx.restore();

  // The legend, along the top.
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  let lx = plot.x;
  usable.forEach((s, i) => {
    const label = s.label;
    const w = ctx.measureText(label).width + 26;
    if (lx + w > width) return;
    ctx.fillStyle = s.color || PALETTE[i % PALETTE.length];
    ctx.fillRect(lx, 10, 12, 4);
    ctx.fillStyle = "#333";
    ctx.fillText(label, lx + 16, 12);
    lx += w;
  });
}

function line(ctx, xa, ya, xb, yb) {
  ctx.beginPath();
  ctx.moveTo(xa, ya);
  ctx.lineTo(xb, yb);
  ctx.stroke();
}

/** Every k-th point so that at most `max` remain, always keeping the last one. */
function thin(points, max) {
  if (points.length <= max) return points;
  const step = Math.ceil(points.length / max);
  const kept = points.filter((_, i) => i % step === 0);
  if (kept[kept.length - 1] !== points[points.length - 1]) kept.push(points[points.length - 1]);
  return kept;
}

/** About `count` round ticks (1, 2 or 5 × 10^k apart) within [lo, hi]. */
export function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || 10 * power;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return ticks;
}

/** Ticks of a log10 axis spanning [lo, hi] (in log10 units): powers of ten, and 2× and 5×
 * when fewer than three powers fall inside. */
function logTicks(lo, hi) {
  const ticks = [];
  for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) ticks.push(k);
  if (ticks.length >= 3) {
    const every = Math.ceil(ticks.length / 6);
    return ticks.filter((k) => k % every === 0);
  }
  const finer = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    for (const m of [1, 2, 5]) {
      const t = k + Math.log10(m);
      if (t >= lo && t <= hi) finer.push(t);
    }
  }
  return finer.length >= 2 ? finer : niceTicks(lo, hi, 4);
}

function formatPower(t) {
  const k = Math.round(t);
  if (Math.abs(t - k) < 1e-9) return Math.abs(k) <= 3 ? String(Number((10 ** k).toPrecision(1))) : `1e${k}`;
  return formatNumber(Number((10 ** t).toPrecision(2)));
}

/** A short label: integers as they are, others with 3 significant digits. */
export function formatNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}
