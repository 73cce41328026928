/* labloop's own small SVG plotting: line/scatter charts with axes, a target line and a legend.
   Why not a library: the dashboard must work in a lab without internet (no CDN), stay a few KB, and draw only
   what the page needs. Everything is built with DOM calls (no innerHTML), so store values cannot inject markup. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function ticks(lo, hi, n) {
    /* at most a dozen ticks, whatever the range: a range far below the values' precision (a flat signal read as
       150.000000001) must never make the loop spin, so ticks are counted, not accumulated */
    if (!isFinite(lo) || !isFinite(hi)) return [];
    if (!(hi > lo)) { hi = lo + 1; }
    const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0) || step0;
    const first = Math.ceil(lo / step), out = [];
    if (!isFinite(first) || !(step > 0)) return [lo, hi];
    for (let i = 0; i < 12; i++) {
      const v = (first + i) * step;
      if (v > hi + step * 1e-9) break;
      out.push(+v.toPrecision(10));
    }
    return out;
  }
  function fmt(v, step) {
    /* as many digits as the ticks' spacing needs (3.115, 3.12, 3.125: never three labels reading 3.12) */
    const need = step > 0 && v !== 0 ? Math.max(1, Math.ceil(Math.log10(Math.abs(v) / step) + 1e-9) + 1) : 2;
    return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(Math.min(6, Math.max(1, need - 1)))
      : +v.toPrecision(Math.min(12, Math.max(3, need))) + "";
  }
  function spacing(vs) { return vs.length > 1 ? Math.abs(vs[1] - vs[0]) : 0; }
  const CHAR_W = 6.2;  /* width of a character of the 11 px tick font, generously */
  function legendRows(series, width) {
    /* the legend sits above the plotting area, never over the data: entries wrapped into rows of the chart's width */
    const rows = [[]];
    let x = 0;
    series.forEach((s, i) => {
      const w = 24 + s.name.length * CHAR_W;
      if (x + w > width && rows[rows.length - 1].length) { rows.push([]); x = 0; }
      rows[rows.length - 1].push([s, i, x]); x += w;
    });
    return rows;
  }
  /* series: [{name, points: [[x, y], ...], kind: "line"|"dots", cls}];
     opts: {xlabel, ylabel, hlines: [{y, label}], logy, integerX (ticks at whole numbers only: trial numbers)} */
  function chart(container, series, opts) {
    opts = opts || {};
    const W = opts.width || 520, H = opts.height || 260, R = 14;
    while (container.firstChild) container.removeChild(container.firstChild);
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img"}, container);
    const all = [];
    series.forEach(s => s.points.forEach(p => { if (isFinite(p[0]) && isFinite(p[1])) all.push(p); }));
    (opts.hlines || []).forEach(h => { if (isFinite(h.y)) all.push([NaN, h.y]); });
    let npts = 0;
    series.forEach(s => { npts += s.points.length; });
    svg.setAttribute("data-points", String(npts));
    if (!all.length) { el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, svg).textContent = opts.empty || "no data yet"; return svg; }
    /* values over several decades (sheet resistance from 5 to 50,000 ohm/sq) are drawn on a log axis */
    const rawY = all.map(p => p[1]);
    const logy = opts.logy !== false && rawY.every(v => v > 0) && Math.max(...rawY) / Math.min(...rawY) > 100;
    const ty = v => logy ? Math.log10(v) : v;
    const xs = all.map(p => p[0]).filter(isFinite), ys = rawY.map(ty);
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (opts.integerX) { x0 = Math.floor(x0) - 0.5; x1 = Math.ceil(x1) + 0.5; }  /* no dot on the frame's edge */
    else {
      if (x0 === x1) { x0 -= 1; x1 += 1; }
      const xp = (x1 - x0) * 0.03; x0 -= xp; x1 += xp;
    }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 + 1; y1 += Math.abs(y1) * 0.1 + 1; }
    const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
    /* the margins are made for what they hold: the y tick labels' width plus the axis title beside them (never over
       them), the legend's rows above the data, the x tick labels and title below */
    const yTicks = logy ? ticks(Math.ceil(y0), Math.floor(y1), 5).filter(Number.isInteger) : ticks(y0, y1, 5);
    const yStep = spacing(yTicks), yText = v => logy ? fmt(Math.pow(10, v)) : fmt(v, yStep);
    const tickW = Math.max(0, ...yTicks.map(v => yText(v).length * CHAR_W));
    const L = Math.ceil(tickW + 10 + (opts.ylabel ? 18 : 0)), B = opts.xlabel ? 38 : 24;
    const rows = legendRows(series, W - L - R), T = 8 + rows.length * 16;
    const X = v => L + (v - x0) / (x1 - x0) * (W - L - R), Yt = v => H - B - (v - y0) / (y1 - y0) * (H - T - B);
    const Y = v => Yt(ty(v));
    yTicks.forEach(v => {
      el("line", {x1: L, x2: W - R, y1: Yt(v), y2: Yt(v), class: "grid"}, svg);
      el("text", {x: L - 6, y: Yt(v) + 4, "text-anchor": "end", class: "tick"}, svg).textContent = yText(v);
    });
    if (logy) svg.setAttribute("data-log-y", "1");
    let xTicks = ticks(x0, x1, 6);
    if (opts.integerX) {
      const step = Math.max(1, Math.ceil((x1 - x0) / 8));
      xTicks = [];
      for (let v = Math.ceil(x0); v <= x1; v++) if (v % step === 0 || step === 1) xTicks.push(v);
    }
    const xStep = spacing(xTicks);
    xTicks.filter(v => X(v) >= L && X(v) <= W - R).forEach(v => {
      el("text", {x: X(v), y: H - B + 16, "text-anchor": "middle", class: "tick x"}, svg).textContent = opts.integerX ? String(v) : fmt(v, xStep);
    });
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}, svg);
    el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}, svg);
    if (opts.xlabel) el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "label"}, svg).textContent = opts.xlabel;
    if (opts.ylabel) el("text", {x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 12 ${(T + H - B) / 2})`}, svg).textContent = opts.ylabel;
    (opts.hlines || []).forEach(h => {
      if (!isFinite(h.y) || (logy && !(h.y > 0))) return;
      el("line", {x1: L, x2: W - R, y1: Y(h.y), y2: Y(h.y), class: "target"}, svg);
      el("text", {x: W - R - 4, y: Math.max(T + 10, Y(h.y) - 4), "text-anchor": "end", class: "target-label"}, svg).textContent = h.label;
    });
    series.forEach((s, i) => {
      const pts = s.points.filter(p => isFinite(p[0]) && isFinite(p[1]));
      const g = el("g", {class: "series " + (s.cls || "s" + i), "data-name": s.name, "data-points": String(pts.length)}, svg);
      if (s.kind === "line" && pts.length) {
        el("polyline", {points: pts.map(p => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ")}, g);
      } else {
        pts.forEach(p => { const c = el("circle", {cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 3.2}, g);
          if (p[2]) el("title", {}, c).textContent = p[2]; });
      }
    });
    rows.forEach((row, r) => row.forEach(([s, i, x]) => {
      const g = el("g", {class: "legend " + (s.cls || "s" + i)}, svg), y = 4 + r * 16;
      el("rect", {x: L + x, y: y + 1, width: 10, height: 10}, g);
      const t = el("text", {x: L + x + 14, y: y + 10, class: "tick"}, g); t.textContent = s.name;
    }));
    return svg;
  }
  window.LabloopPlot = {chart: chart};
})();
