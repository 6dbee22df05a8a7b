// A line chart of one metric over time, drawn as SVG by our own code: no library, nothing fetched.
// `scale` is pure (points in, coordinates out); `lineChart` builds the SVG element from it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 520, height: 180, left: 58, right: 16, top: 12, bottom: 28 };

// Points [{at, value}] (oldest first) as plot coordinates, with the value and time ranges drawn.
function scale(points, box = CHART) {
  const times = points.map(p => Date.parse(p.at));
  const values = points.map(p => p.value);
  let [t0, t1] = [Math.min(...times), Math.max(...times)];
  let [v0, v1] = [Math.min(...values), Math.max(...values)];
  if (t0 === t1) { t0 -= 30000; t1 += 30000; }  // one point: half a minute either side
  if (v0 === v1) { v0 -= 1; v1 += 1; }  // a flat line sits in the middle, not on an edge
  const pad = (v1 - v0) * 0.08;
  [v0, v1] = [v0 - pad, v1 + pad];
  const plotW = box.width - box.left - box.right, plotH = box.height - box.top - box.bottom;
  const x = t => box.left + (t - t0) / (t1 - t0) * plotW;
  const y = v => box.top + (1 - (v - v0) / (v1 - v0)) * plotH;
  return { xy: points.map((p, i) => [x(times[i]), y(values[i])]), t0, t1, v0, v1, x, y, box };
}

// 8.34, 1635, 80.47B: short enough for the axis, whatever the metric's size. `span` (the
// axis' range) asks for the digits that tell its labels apart: 10,816 and 10,825 are both 10.8K.
function niceNumber(value, span = Math.abs(value)) {
  const abs = Math.abs(value);
  const digits = Math.min(8, Math.max(3, Math.ceil(Math.log10((abs || 1) / (span || 1))) + 1));
  if (abs >= 10000) return new Intl.NumberFormat([], { notation: "compact", maximumSignificantDigits: digits }).format(value);
  if (abs >= 1000 || abs === 0) return value.toFixed(0);
  return Number(value.toPrecision(digits)).toString();
}

// The time of day; with seconds when the chart spans less than ten minutes, else its labels repeat.
function clockTime(ms, spanMs) {
  const style = spanMs < 600000 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return new Date(ms).toLocaleTimeString([], style);
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// A <figure> with the metric's name, its last value and the chart of `points`.
function lineChart(metric, points) {
  const s = scale(points);
  const { box } = s;
  const svg = svgElement("svg", {
    width: box.width, height: box.height, viewBox: `0 0 ${box.width} ${box.height}`,
    role: "img", "aria-label": `${metric} over time`, "data-points": points.length,
  });
  const bottom = box.height - box.bottom;
  for (let i = 0; i <= 3; i++) {  // four value lines, labelled
    const value = s.v0 + (s.v1 - s.v0) * i / 3;
    const y = s.y(value);
    svg.append(svgElement("line", { class: "grid", x1: box.left, x2: box.width - box.right, y1: y, y2: y }));
    svg.append(svgElement("text", { x: box.left - 6, y: y + 4, "text-anchor": "end" }, niceNumber(value, s.v1 - s.v0)));
  }
  for (const [t, anchor] of [[s.t0, "start"], [(s.t0 + s.t1) / 2, "middle"], [s.t1, "end"]]) {
    svg.append(svgElement("text", { x: s.x(t), y: box.height - 8, "text-anchor": anchor }, clockTime(t, s.t1 - s.t0)));
  }
  const line = s.xy.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" ");
  const [firstX] = s.xy[0], [lastX, lastY] = s.xy[s.xy.length - 1];
  svg.append(svgElement("path", { class: "area", d: `${line} L${lastX.toFixed(1)} ${bottom} L${firstX.toFixed(1)} ${bottom} Z` }));
  svg.append(svgElement("path", { class: "line", d: line }));
  svg.append(svgElement("circle", { class: "last", cx: lastX, cy: lastY, r: 3.5 }));

  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = metric;
  const caption = document.createElement("figcaption");
  caption.textContent = `${metric}: ${niceNumber(points[points.length - 1].value)}`;
  figure.append(caption, svg);
  return figure;
}
