// chart.js: a small SVG line chart for time series, no dependencies.
//
//   MarinaChart.render(el, {series: [{name, color, points: [[ms, value|null], ...]}],
//                           from: ms, to: ms, format: v => "text", yMax: number?, gapMs: number?,
//                           bytes: bool? (ticks at round KiB/MiB/GiB), integer: bool? (whole-number ticks)})
//
// el is a .chart element; the chart sets el.dataset.points (points of the
// first series with a value) and el.dataset.max (its largest value), so
// tests and scripts can tell when data arrived.
(function () {
  'use strict';
  const NS = 'http://www.w3.org/2000/svg';
  const M = { l: 56, r: 12, t: 8, b: 22 };

  function svgEl(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // niceStep returns a round step so that span/step is about n.
  // Integer steps (counts) never use 2.5.
  function niceStep(span, n, integer) {
    if (!(span > 0)) return 1;
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 && !integer ? 2.5 : f <= 5 ? 5 : 10) * p;
    return integer ? Math.max(1, Math.round(step)) : step;
  }

  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200].map(s => s * 1000);

  function pad(n) { return String(n).padStart(2, '0'); }
  function clock(ms, secs) {
    const d = new Date(ms);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + (secs ? ':' + pad(d.getSeconds()) : '');
  }

  function render(el, opt) {
    let plot = el.querySelector('.plot');
    if (!plot) {
      plot = document.createElement('div');
      plot.className = 'plot';
      el.appendChild(plot);
    }
    const width = Math.max(plot.clientWidth || el.clientWidth || 600, 200);
    const height = 170;
    const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
    svg.setAttribute('aria-label', el.dataset.title || 'chart');
    const fmt = opt.format || (v => String(v));
    const series = opt.series || [];
    const to = opt.to, from = Math.min(opt.from, to - 1000);
    const gap = opt.gapMs || Infinity;

    let max = 0, count = 0, firstMax = 0;
    series.forEach((s, i) => {
      for (const [t, v] of s.points) {
        if (v == null || t < from || t > to) continue;
        if (v > max) max = v;
        if (i === 0) { count++; if (v > firstMax) firstMax = v; }
      }
    });
    el.dataset.points = String(count);
    el.dataset.max = String(firstMax);
    let yMax = opt.yMax != null ? opt.yMax : max;
    if (!(yMax > 0)) yMax = 1;
    // Byte charts step in round multiples of KiB, MiB, GiB.
    let ystep = niceStep(yMax, 4, opt.integer);
    if (opt.bytes && yMax >= 1024) {
      const unit = Math.pow(1024, Math.floor(Math.log(yMax) / Math.log(1024)));
      ystep = niceStep(yMax / unit, 4) * unit;
    }
    if (opt.yMax == null) yMax = Math.ceil(yMax / ystep) * ystep;

    const pw = width - M.l - M.r, ph = height - M.t - M.b;
    const X = t => M.l + (t - from) / (to - from) * pw;
    const Y = v => M.t + ph - (v / yMax) * ph;

    // Grid and y axis labels.
    for (let v = 0; v <= yMax + ystep / 1e6; v += ystep) {
      const y = Y(v);
      svg.appendChild(svgEl('line', { class: 'grid', x1: M.l, x2: width - M.r, y1: y, y2: y }));
      const tx = svgEl('text', { class: 'tick', x: M.l - 6, y: y + 3.5, 'text-anchor': 'end' });
      tx.textContent = fmt(v, true);
      svg.appendChild(tx);
    }
    // Time axis.
    const span = to - from;
    const tstep = TIME_STEPS.find(s => span / s <= 6) || TIME_STEPS[TIME_STEPS.length - 1];
    for (let t = Math.ceil(from / tstep) * tstep; t <= to; t += tstep) {
      const x = X(t);
      svg.appendChild(svgEl('line', { class: 'axis', x1: x, x2: x, y1: M.t + ph, y2: M.t + ph + 4 }));
      const tx = svgEl('text', { class: 'tick', x: x, y: height - 6, 'text-anchor': 'middle' });
      tx.textContent = clock(t, tstep < 60000);
      svg.appendChild(tx);
    }
    svg.appendChild(svgEl('line', { class: 'axis', x1: M.l, x2: width - M.r, y1: M.t + ph, y2: M.t + ph }));
    svg.appendChild(svgEl('line', { class: 'axis', x1: M.l, x2: M.l, y1: M.t, y2: M.t + ph }));

    // Series: one path each, broken at missing values and gaps.
    series.forEach((s, i) => {
      let d = '', prevT = null, n = 0, lastXY = null;
      for (const [t, v] of s.points) {
        if (t < from || t > to) continue;
        if (v == null) { prevT = null; continue; }
        const x = X(t).toFixed(1), y = Y(Math.min(v, yMax)).toFixed(1);
        d += (prevT == null || t - prevT > gap ? 'M' : 'L') + x + ',' + y;
        prevT = t; n++; lastXY = [x, y];
      }
      if (!n) return;
      if (i === 0 && series.length === 1 && n > 1) {
        // Shaded area under a single series.
        const area = d.replace(/M([\d.]+),([\d.]+)/g, (m, x, y) => `M${x},${M.t + ph}L${x},${y}`);
        const segs = area.split('M').filter(Boolean).map(seg => {
          const pts = seg.split('L');
          const lastX = pts[pts.length - 1].split(',')[0];
          return 'M' + seg + `L${lastX},${M.t + ph}Z`;
        });
        svg.appendChild(svgEl('path', { class: 'area', d: segs.join(''), fill: s.color }));
      }
      svg.appendChild(svgEl('path', { class: 'line', d: d, stroke: s.color, 'data-series': s.name, 'data-points': n }));
      if (n === 1) svg.appendChild(svgEl('circle', { cx: lastXY[0], cy: lastXY[1], r: 2.5, fill: s.color }));
    });
    if (!count && !series.some(s => s.points.some(p => p[1] != null))) {
      const tx = svgEl('text', { class: 'empty', x: M.l + pw / 2, y: M.t + ph / 2, 'text-anchor': 'middle' });
      tx.textContent = opt.empty || 'no data yet';
      svg.appendChild(tx);
    }

    // Hover: the values nearest the pointer.
    const hover = svgEl('line', { class: 'hover-line', x1: 0, x2: 0, y1: M.t, y2: M.t + ph, visibility: 'hidden' });
    svg.appendChild(hover);
    let tip = el.querySelector('.tip');
    if (!tip) {
      tip = document.createElement('div');
      tip.className = 'tip';
      tip.hidden = true;
      el.appendChild(tip);
    }
    tip.hidden = true;
    svg.addEventListener('mousemove', ev => {
      const r = svg.getBoundingClientRect();
      const px = (ev.clientX - r.left) * (width / r.width);
      if (px < M.l || px > width - M.r) { hover.setAttribute('visibility', 'hidden'); tip.hidden = true; return; }
      const t = from + (px - M.l) / pw * (to - from);
      const lines = [];
      let at = null;
      for (const s of series) {
        let best = null;
        for (const p of s.points) {
          if (p[1] == null) continue;
          if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
        }
        if (best) { lines.push(s.name + ': ' + fmt(best[1], false)); if (at == null) at = best[0]; }
      }
      if (at == null) return;
      const x = X(at);
      hover.setAttribute('x1', x); hover.setAttribute('x2', x); hover.setAttribute('visibility', 'visible');
      tip.textContent = clock(at, true) + '  ' + lines.join('  ');
      tip.hidden = false;
      const left = Math.min(Math.max(x * r.width / width + svg.offsetLeft + 8, 0), el.clientWidth - tip.offsetWidth - 4);
      tip.style.left = left + 'px';
      tip.style.top = (svg.offsetTop + 4) + 'px';
    });
    svg.addEventListener('mouseleave', () => { hover.setAttribute('visibility', 'hidden'); tip.hidden = true; });

    plot.replaceChildren(svg);
  }

  window.MarinaChart = { render: render, niceStep: niceStep };
})();
