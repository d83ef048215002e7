// ProximaDB dashboard: reading /metrics (Prometheus text format) and drawing line charts on <canvas>
// by hand. No libraries. Loaded before app.js, which uses window.ProximaMetrics.
"use strict";

window.ProximaMetrics = (() => {
  // ------------------------------------------------------------------ Prometheus text

  // [{name, labels, value}] of the text exposition format (comments and blank lines skipped).
  function parsePrometheus(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        let lm;
        while ((lm = re.exec(m[2])) !== null) labels[lm[1]] = lm[2].replace(/\\(.)/g, "$1");
      }
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return samples;
  }

  function isSearchRoute(route) {
    return route === "Search" || route === "SearchBatch" || /\/search(\/batch)?$/.test(route || "");
  }

  // What the charts need from one scrape: records written and queries answered (summed over
  // collections) and the search latency histogram's cumulative buckets (summed over both protocols).
  function summarise(samples) {
    const raw = { t: performance.now() / 1000, written: 0, queries: 0, buckets: new Map() };
    for (const s of samples) {
      if (s.name === "proximadb_records_written_total") raw.written += s.value;
      else if (s.name === "proximadb_search_queries_total") raw.queries += s.value;
      else if (s.name === "proximadb_request_seconds_bucket" && isSearchRoute(s.labels.route)) {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        raw.buckets.set(le, (raw.buckets.get(le) || 0) + s.value);
      }
    }
    return raw;
  }

  // Prometheus's histogram_quantile over the buckets' increase since the previous scrape.
  function quantile(q, now, before) {
    const bounds = [...now.buckets.keys()].sort((a, b) => a - b);
    const counts = bounds.map((b) => (now.buckets.get(b) || 0) - ((before && before.buckets.get(b)) || 0));
    const total = counts.length ? counts[counts.length - 1] : 0;
    if (!(total > 0)) return null;
    const rank = q * total;
    for (let i = 0; i < bounds.length; i += 1) {
      if (counts[i] >= rank) {
        if (bounds[i] === Infinity) return bounds.length > 1 ? bounds[i - 1] : null;
        const lower = i === 0 ? 0 : bounds[i - 1];
        const below = i === 0 ? 0 : counts[i - 1];
        const inBucket = counts[i] - below;
        return lower + (bounds[i] - lower) * (inBucket > 0 ? (rank - below) / inBucket : 1);
      }
    }
    return null;
  }

  // ------------------------------------------------------------------ line charts (by hand on <canvas>)

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  // series: [{name, color, values (null: a gap)}], the newest value last, at the right edge. axis: {history
  // (most samples shown), minSlots (the x axis never spans fewer), secondsPerSample}.
  function drawChart(canvas, series, axis) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    const left = 56;
    const right = width - 12;
    const top = 24;
    const bottom = height - 26;
    let peak = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > peak) peak = v;
    const yMax = niceMax(peak);
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#e3e6ec";
    ctx.fillStyle = "#667085";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = bottom - ((bottom - top) * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y + 0.5);
      ctx.lineTo(right, y + 0.5);
      ctx.stroke();
      const label = (yMax * i) / 4;
      ctx.fillText(label >= 100 ? label.toFixed(0) : String(+label.toPrecision(3)), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    // The x axis spans the samples so far (at least minSlots, at most history): a new chart fills at once.
    const count = series.reduce((n, s) => Math.max(n, s.values.length), 0);
    const slots = Math.min(axis.history, Math.max(axis.minSlots, count));
    const span = (slots - 1) * axis.secondsPerSample;
    for (let i = 0; i <= 3; i += 1) {
      const x = left + ((right - left) * i) / 3;
      const ago = span - (span * i) / 3;
      ctx.fillText(i === 3 ? "now" : "-" + (+ago.toPrecision(2)) + " s", x, bottom + 6);
    }
    const xOf = (i, n) => right - ((n - 1 - i) * (right - left)) / (slots - 1);
    const yOf = (v) => bottom - ((bottom - top) * v) / yMax;
    let plotted = 0;
    ctx.lineWidth = 2;
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      let drawing = false;
      s.values.forEach((v, i) => {
        if (v === null) { drawing = false; return; }
        const x = xOf(i, s.values.length);
        const y = yOf(v);
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        if (!drawing && (i === s.values.length - 1 || s.values[i + 1] === null)) {
          ctx.fillStyle = s.color; // a point with no neighbour: a dot
          ctx.fillRect(x - 2, y - 2, 4, 4);
        }
        drawing = true;
        plotted += 1;
      });
      ctx.stroke();
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    let x = left;
    for (const s of series) {
      ctx.fillStyle = s.color;
      ctx.fillRect(x, 8, 12, 4);
      ctx.fillStyle = "#1d2330";
      ctx.fillText(s.name, x + 16, 10);
      x += ctx.measureText(s.name).width + 34;
    }
    canvas.dataset.points = String(plotted);
  }

  return { parsePrometheus, summarise, quantile, drawChart };
})();
