// The live page: polls /live/data every 2 s and redraws only when a new minute closed.
// `?minutes=N` (default 1440) and `?stall_after=S` (default 180, as PipelineStalled)
// pass through to the server. window.live exposes the charts and the last data (tests).
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const key of ["minutes", "stall_after"]) if (params.has(key)) query.set(key, params.get(key));
  const url = "/live/data" + (query.toString() ? "?" + query : "");
  // With TXMON_API_TOKEN the page is opened as /live/static/live.html#token=...: the
  // fragment never leaves the browser, and the token goes only into the data requests.
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const COLORS = {approved: "#2e7d32", denied: "#f9a825", failed: "#c62828", reversed: "#6a1b9a",
                  backend_reversed: "#ad1457", refunded: "#1565c0", processing: "#00838f"};
  const utc = ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const hhmm = uPlot.fmtDate("{HH}:{mm}"), full = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}");
  // 24-hour UTC times on the axis and in the legend, as everywhere else in txmon.
  const xAxis = {values: (u, splits) => splits.map(v => hhmm(utc(v)))};
  const xSeries = {label: "minute", value: (u, v) => v == null ? "--" : full(utc(v))};
  const live = window.live = {counts: null, score: null, data: null, key: null, renderMs: null};

  function width() { return Math.max(600, document.body.clientWidth - 20); }

  function countsChart(statuses) {
    const series = [xSeries].concat(statuses.map(s => ({
      label: s, stroke: COLORS[s] || "#555", width: 1.5, scale: s === "approved" ? "approved" : "n",
    })));
    return new uPlot({
      width: width(), height: 300, tzDate: utc, series,
      scales: {x: {time: true}},
      axes: [xAxis, {scale: "n", label: "per minute", size: 60},
             {scale: "approved", side: 1, label: "approved per minute", grid: {show: false},
              size: 70}],
    }, [[]].concat(statuses.map(() => [])), document.getElementById("counts-chart"));
  }

  function scoreChart() {
    return new uPlot({
      width: width(), height: 200, tzDate: utc,
      series: [xSeries, {label: "score", stroke: "#1565c0", width: 1.5},
               {label: "threshold", stroke: "#c62828", dash: [6, 4], width: 1.5}],
      scales: {x: {time: true}},
      // The same axis sizes as the counts chart, so the minutes line up one above the other.
      axes: [xAxis, {label: "score", size: 60},
             {side: 1, size: 70, label: " ", grid: {show: false}, values: (u, s) => s.map(() => "")}],
    }, [[], [], []], document.getElementById("score-chart"));
  }

  function text(id, value) { document.getElementById(id).textContent = value; }

  function cell(row, value, cls) {
    const td = row.insertCell();
    td.textContent = value;
    if (cls) td.className = cls;
  }

  function fillTable(id, rows, columns, rowClass) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = body.insertRow();
      tr.className = rowClass;
      tr.dataset.incident = r.incident_id;
      for (const [key, cls] of columns) cell(tr, r[key], cls ? cls + r[key] : "");
    }
  }

  function ago(seconds) {
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function showFreshness(f) {
    const banner = document.getElementById("stall");
    if (f.minute === null) { text("freshness", "waiting for the first window…"); return; }
    const age = f.age_s === null ? "" : ", received " + ago(f.age_s) + " ago";
    text("freshness", "newest minute " + f.minute + " UTC" + age);
    banner.hidden = !f.stalled;
    banner.textContent = f.stalled ? "Pipeline stalled: no window closed for " + ago(f.age_s) +
      " (more than " + ago(f.stall_after_s) + "). Is `txmon process` running?" : "";
  }

  function showNumbers(d) {
    text("t-transactions", d.totals.transactions.toLocaleString("en"));
    text("t-windows", d.totals.windows.toLocaleString("en"));
    text("t-late", d.totals.late.toLocaleString("en"));
    text("t-dead", d.dead_letters.total.toLocaleString("en"));
    text("t-incidents", d.incidents.length);
    const reasons = Object.entries(d.dead_letters.by_reason).map(([k, v]) => k + " " + v);
    text("dead-reasons", reasons.length ? "dead letters by reason: " + reasons.join(", ") : "");
    const incidents = d.incidents.map(i => ({...i, since: i.since.slice(0, 16).replace("T", " "),
                                             group: i.groups.join(", ")}));
    fillTable("incidents", incidents, [["severity", "sev-"], ["group"], ["since"], ["summary"]],
              "incident");
    document.getElementById("no-incidents").hidden = incidents.length > 0;
    fillTable("alerts", d.alerts, [["minute"], ["event"], ["severity", "sev-"], ["group"], ["summary"]],
              "alert");
  }

  function showCharts(d) {
    const key = d.minutes.length + ":" + d.minutes[d.minutes.length - 1];
    if (key === live.key) return false;
    live.key = key;
    if (!live.counts) { live.counts = countsChart(d.statuses); live.score = scoreChart(); }
    live.counts.setData([d.minutes].concat(d.statuses.map(s => d.counts[s])));
    live.score.setData([d.minutes, d.score, d.threshold]);
    document.getElementById("no-score").hidden = d.score.some(v => v !== null);
    document.body.dataset.points = d.minutes.length;
    return true;
  }

  async function poll() {
    const began = performance.now();
    try {
      const response = await fetch(url, {cache: "no-store", headers});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const d = await response.json();
      live.data = d;
      if (showCharts(d)) live.renderMs = performance.now() - began;  // fetch to drawn
      showFreshness(d.freshness);
      showNumbers(d);
      document.body.dataset.updated = String(d.now);
    } catch (err) {
      text("freshness", "cannot reach the API: " + err.message);
    }
    setTimeout(poll, 2000);
  }

  window.addEventListener("resize", () => {
    for (const c of [live.counts, live.score]) if (c) c.setSize({width: width(), height: c.height});
  });
  poll();
})();
