// The throughput chart (uPlot) over the last five minutes, and the small sparklines of the
// metric cards. The server sends per-second buckets; recent ones are re-sent and overwrite.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { svg } from "./dom.js";
import { count, rate } from "./format.js";

export const WINDOW_S = 300;
// Ingested is the filled area and completed a line over it, so a healthy pipeline reads as a
// green line riding the cyan area. Failures are drawn only where there are some: a red line
// along zero would look like an alarm.
const SERIES = [
  { key: "ingested", label: "Ingested", color: "#22d3ee", fill: true, width: 1.5 },
  { key: "completed", label: "Completed", color: "#34d399", fill: false, width: 2 },
  { key: "failed", label: "Failed", color: "#fb7185", fill: false, width: 2, sparse: true },
];

// Events per second, by epoch second, for the last WINDOW_S seconds.
export class Timeline {
  constructor() {
    this.buckets = new Map();
    this.now = Math.floor(Date.now() / 1000);
  }

  merge(series, serverTimeMs) {
    this.now = Math.floor(serverTimeMs / 1000);
    series.ingested.forEach((_, i) => {
      this.buckets.set(series.start + i, SERIES.map(({ key }) => series[key][i]));
    });
    for (const second of this.buckets.keys()) if (second <= this.now - WINDOW_S) this.buckets.delete(second);
  }

  columns(seconds = WINDOW_S) {
    const x = [];
    const ys = SERIES.map(() => []);
    for (let second = this.now - seconds + 1; second <= this.now; second++) {
      x.push(second);
      const values = this.buckets.get(second) || [0, 0, 0];
      ys.forEach((column, i) => column.push(values[i]));
    }
    return [x, ...ys];
  }

  clear() {
    this.buckets.clear();
  }
}

const timeOfDay = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
const chartHeight = (container) => (container.clientWidth < 520 ? 190 : 230);

function gradient(color) {
  return (u) => {
    const { top, height } = u.bbox;
    if (!(height > 0)) return `${color}33`; // not laid out yet (the page is still hidden)
    const fill = u.ctx.createLinearGradient(0, top, 0, top + height);
    fill.addColorStop(0, `${color}80`);
    fill.addColorStop(1, `${color}08`);
    return fill;
  };
}

export function throughputChart(container, summary) {
  const timeline = new Timeline();
  const axis = {
    stroke: "#8391ab",
    font: "11px 'Inter Variable', system-ui, sans-serif",
    grid: { stroke: "rgba(148, 163, 184, 0.08)", width: 1 },
    ticks: { show: false },
  };
  const options = {
    width: container.clientWidth || 600,
    height: chartHeight(container),
    padding: [10, 24, 0, 0], // room on the right for the last time label
    cursor: { drag: { x: false, y: false }, points: { size: 7 } },
    legend: { show: true, live: true },
    // Out of hover, the legend reads the last complete second instead of dashes.
    hooks: { draw: [(u) => u.cursor.left < 0 && u.setLegend({ idx: u.data[0].length - 2 }, false)] },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] } },
    axes: [
      { ...axis, space: 76, values: (u, ticks) => ticks.map((t) => timeOfDay(t)) },
      { ...axis, size: 46, values: (u, ticks) => ticks.map((v) => rate(v)) },
    ],
    series: [
      { value: (u, v) => (v === null ? "–" : timeOfDay(v)) },
      ...SERIES.map(({ label, color, fill, width, sparse }) => ({
        label: `${label}/s`,
        stroke: color,
        width,
        fill: fill ? gradient(color) : undefined,
        paths: uPlot.paths.spline(),
        points: sparse ? { show: true, size: 6, fill: color, stroke: color } : { show: false },
        value: (u, v) => count(v ?? 0),
      })),
    ],
  };
  const plot = new uPlot(options, timeline.columns(), container);
  // The legend sits under the plot inside the container, so only the width is followed.
  new ResizeObserver(() => plot.setSize({ width: container.clientWidth, height: chartHeight(container) })).observe(container);

  let seconds = 60;

  function draw() {
    const columns = timeline.columns(seconds);
    plot.setData(columns.map((column, i) => (SERIES[i - 1]?.sparse ? column.map((v) => v || null) : column)));
    const totals = SERIES.map((_, i) => columns[i + 1].reduce((a, b) => a + b, 0));
    const peak = Math.max(...columns[1]);
    summary({ seconds, ingested: totals[0], completed: totals[1], failed: totals[2], peak });
    return columns;
  }

  return {
    update(series, serverTimeMs) {
      timeline.merge(series, serverTimeMs);
      return draw();
    },
    setWindow(value) {
      seconds = value;
      draw();
    },
    reset() {
      timeline.clear();
      draw();
    },
  };
}

// A tiny area sparkline drawn in SVG; values are scaled to the card's height.
export function sparkline(container, color) {
  const id = `spark-${Math.random().toString(36).slice(2, 8)}`;
  const stops = [svg("stop", { offset: "0", "stop-color": color, "stop-opacity": "0.45" }), svg("stop", { offset: "1", "stop-color": color, "stop-opacity": "0" })];
  const area = svg("path", { fill: `url(#${id})` });
  const line = svg("path", { fill: "none", stroke: color, "stroke-width": "1.5", "vector-effect": "non-scaling-stroke" });
  const root = svg(
    "svg",
    { viewBox: "0 0 100 30", preserveAspectRatio: "none", "aria-hidden": "true" },
    svg("defs", {}, svg("linearGradient", { id, x1: "0", y1: "0", x2: "0", y2: "1" }, ...stops)),
    area,
    line,
  );
  container.append(root);
  return (values) => {
    if (values.length < 2) return;
    const max = Math.max(1, ...values);
    const step = 100 / (values.length - 1);
    // The peak reaches three quarters of the height, so a steady value is a line, not a block.
    const points = values.map((v, i) => `${(i * step).toFixed(2)},${(29 - (v / max) * 21).toFixed(2)}`);
    line.setAttribute("d", `M${points.join("L")}`);
    area.setAttribute("d", `M0,30L${points.join("L")}L100,30Z`);
  };
}
