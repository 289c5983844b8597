// pytest-mlperf dashboard: draws window.MLPERF_DATA (data.js) with uPlot. No network, works from file://.
// Every chart is kept in window.mlperfCharts by id, so a test (or a curious reader) can inspect what was drawn.
(function () {
  "use strict";
  const data = window.MLPERF_DATA;
  const charts = {};
  window.mlperfCharts = charts;
  const root = document.getElementById("cases");
  const WIDTH = 420, HEIGHT = 220;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function figure(parent, id, caption) {
    const fig = el("figure", { id: id });
    fig.appendChild(el("figcaption", {}, caption));
    parent.appendChild(fig);
    return fig;
  }

  function trendTable(points, unit) {
    const table = el("table");
    const head = el("tr");
    ["#", "session", "commit", unit].forEach((h) => head.appendChild(el("th", {}, h)));
    table.appendChild(head);
    points.forEach((p, i) => {
      const row = el("tr");
      row.appendChild(el("td", {}, String(i + 1)));
      row.appendChild(el("td", {}, p.datetime || ""));
      row.appendChild(el("td", {}, (p.commit || "-").slice(0, 10)));
      row.appendChild(el("td", {}, p.value.toPrecision(5)));
      table.appendChild(row);
    });
    return table;
  }

  function trend(parent, id, points, label, unit) {
    const fig = figure(parent, id, label + " over time");
    // Sessions are evenly spaced, oldest first (their dates and commits are in the table below the chart).
    const opts = {
      width: WIDTH, height: HEIGHT, scales: { x: { time: false } },
      series: [{ label: "session" },
               { label: label + " (" + unit + ")", stroke: "#1f77b4", points: { show: true, size: 6 } }],
      axes: [{ label: "session", incrs: [1, 2, 5, 10, 20, 50, 100] }, { label: unit }],
    };
    charts[id] = new uPlot(opts, [points.map((p, i) => i + 1), points.map((p) => p.value)], fig);
    fig.appendChild(trendTable(points, unit));
  }

  function distribution(parent, id, dist) {
    const fig = figure(parent, id, "latency distribution of the latest traced run (" + (dist.commit || "-").slice(0, 10) + ")");
    const opts = {
      width: WIDTH, height: HEIGHT, scales: { x: { time: false } },
      series: [{ label: "ms" }, { label: "queries", stroke: "#2ca02c", fill: "rgba(44,160,44,0.3)",
                                  paths: uPlot.paths.bars({ size: [0.9, 100] }) }],
      axes: [{ label: "latency (ms)" }, {}],
    };
    charts[id] = new uPlot(opts, [dist.x, dist.y], fig);
  }

  function pareto(parent, id, points) {
    const measured = points.filter((p) => p.qps !== null && p.latency_ns !== null)
      .sort((a, b) => a.latency_ns - b.latency_ns);
    const fig = figure(parent, id, "Pareto front of the sweep (latest session): samples/s against latency");
    if (measured.length) {
      const opts = {
        width: WIDTH, height: HEIGHT, scales: { x: { time: false } },
        series: [{ label: "latency (ms)" },
                 { label: "configurations", stroke: "#7f7f7f", paths: () => null, points: { show: true, size: 7 } },
                 { label: "front", stroke: "#d62728", spanGaps: true, points: { show: true, size: 9 } }],
        axes: [{ label: "latency (ms)" }, { label: "samples/s" }],
      };
      charts[id] = new uPlot(opts, [measured.map((p) => p.latency_ns / 1e6), measured.map((p) => p.qps),
                                    measured.map((p) => (p.front ? p.qps : null))], fig);
    }
    const table = el("table");
    const head = el("tr");
    ["front", "configuration", "samples/s", "latency (ms)", "valid runs"].forEach((h) => head.appendChild(el("th", {}, h)));
    table.appendChild(head);
    points.forEach((p) => {
      const row = el("tr");
      [p.front ? "*" : "", p.configuration, p.qps === null ? "-" : p.qps.toFixed(1),
       p.latency_ns === null ? "-" : (p.latency_ns / 1e6).toFixed(3), p.valid_runs + "/" + p.runs]
        .forEach((c) => row.appendChild(el("td", {}, c)));
      table.appendChild(row);
    });
    fig.appendChild(table);
  }

  function comparison(cmp) {
    const section = el("section", { id: "comparison" });
    section.appendChild(el("h2", {}, "head against base: " + cmp.verdict));
    root.appendChild(section);
    if (cmp.refused_reason) section.appendChild(el("p", {}, cmp.refused_reason));
    const shown = cmp.cases.filter((c) => c.change !== null && c.ci !== null);
    const fig = figure(section, "comparison-change", "relative change of head against base, with its interval (%)");
    if (shown.length) {
      const opts = {
        width: 2 * WIDTH, height: HEIGHT,
        scales: { x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] } },
        series: [{ label: "case #" },
                 { label: "change %", stroke: "#9467bd", fill: "rgba(148,103,189,0.3)",
                   paths: uPlot.paths.bars({ size: [0.6, 60] }) },
                 { label: "interval low %", stroke: "#555", paths: () => null, points: { show: true, size: 5 } },
                 { label: "interval high %", stroke: "#555", paths: () => null, points: { show: true, size: 5 } }],
        axes: [{ label: "case # (table below)", incrs: [1, 2, 5, 10] }, { label: "%" }],
      };
      charts["comparison-change"] = new uPlot(opts, [shown.map((c, i) => i + 1), shown.map((c) => 100 * c.change),
        shown.map((c) => 100 * c.ci[0]), shown.map((c) => 100 * c.ci[1])], fig);
    }
    const table = el("table");
    const head = el("tr");
    ["#", "case", "metric", "base", "head", "verdict", "decision"].forEach((h) => head.appendChild(el("th", {}, h)));
    table.appendChild(head);
    cmp.cases.forEach((c) => {
      const row = el("tr");
      const index = shown.indexOf(c);
      const shownValue = (v) => (typeof v === "number" ? v.toPrecision(6) : "-");
      [index < 0 ? "" : String(index + 1), c.id, c.metric || "", shownValue(c.base), shownValue(c.head),
       c.verdict || "", c.message || ""]
        .forEach((v) => row.appendChild(el("td", {}, v)));
      table.appendChild(row);
    });
    fig.appendChild(table);
  }

  if (data.comparison) comparison(data.comparison);

  let n = 0;
  for (const [name, c] of Object.entries(data.cases)) {
    if (!c.trend.throughput && !c.trend.latency && !c.distribution) continue;  // accuracy-only cases
    const section = el("section");
    section.appendChild(el("h2", {}, name));
    const row = el("div", { class: "charts" });
    section.appendChild(row);
    root.appendChild(section);
    if (c.trend.throughput) trend(row, "case" + n + "-throughput", c.trend.throughput, "throughput", "samples/s");
    if (c.trend.latency) trend(row, "case" + n + "-latency", c.trend.latency, "latency", "ms");
    if (c.distribution) distribution(row, "case" + n + "-distribution", c.distribution);
    n += 1;
  }
  let s = 0;
  for (const [name, points] of Object.entries(data.pareto)) {
    const section = el("section");
    section.appendChild(el("h2", {}, name + " (sweep)"));
    const row = el("div", { class: "charts" });
    section.appendChild(row);
    root.appendChild(section);
    pareto(row, "sweep" + s + "-pareto", points);
    s += 1;
  }
  document.body.setAttribute("data-rendered", String(Object.keys(charts).length));
})();
