// explorer.js — the SQL explorer page (explorer.html): runs the statement through POST /api/sql (Ctrl+Enter or
// the Run button), shows the rows as a table and as a chart (first column on the x axis, every numeric column a
// series; bar or line), exports the same statement as CSV (POST /api/sql?format=csv) and shows the server's error
// message. The last statement is kept in localStorage. For tests: `body[data-runs]` counts finished runs and
// `body[data-result]` is "ok" or "error".
"use strict";

(function () {
  const S = window.Shop;
  const { el, $, fmt } = S;

  const SQL_KEY = "shopstream.explorer.sql";
  const CHART_KEY = "shopstream.explorer.chart";
  const MAX_TABLE_ROWS = 1000;
  const MAX_CHART_POINTS = 5000;
  // The built-in tables first; then every dataset the catalog lists (information_schema, asked on each load).
  const BUILT_IN = ["orders", "raw_orders", "dead_letters", "loads"];
  const COLUMNS_SQL =
    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position";
  const EXAMPLES = [
    [
      "Revenue by month",
      "SELECT CAST(invoice_month AS VARCHAR) AS month,\n       ROUND(SUM(line_revenue), 2) AS revenue,\n       COUNT(DISTINCT invoice_no) AS orders\nFROM orders\nWHERE NOT is_cancellation\nGROUP BY 1\nORDER BY 1",
    ],
    [
      "Top 10 countries",
      "SELECT country, ROUND(SUM(line_revenue), 2) AS revenue\nFROM orders\nWHERE NOT is_cancellation\nGROUP BY country\nORDER BY revenue DESC\nLIMIT 10",
    ],
    [
      "Orders by hour of day",
      "SELECT CAST(date_part('hour', invoice_date) AS INT) AS hour,\n       COUNT(DISTINCT invoice_no) AS orders\nFROM orders\nWHERE NOT is_cancellation\nGROUP BY 1\nORDER BY 1",
    ],
    [
      "Cancellations by month",
      "SELECT CAST(invoice_month AS VARCHAR) AS month,\n       COUNT(DISTINCT invoice_no) AS cancelled_orders,\n       ROUND(-SUM(line_revenue), 2) AS cancelled_value\nFROM orders\nWHERE is_cancellation\nGROUP BY 1\nORDER BY 1",
    ],
    ["Dead letters", "SELECT * FROM dead_letters LIMIT 100"],
  ];

  const input = $("#sql");
  const chartType = $("#chart-type");
  let last = null; // {sql, rows, columns}
  let chart = null;
  let runs = 0;

  input.value = localStorage.getItem(SQL_KEY) || EXAMPLES[0][1];
  chartType.value = localStorage.getItem(CHART_KEY) || "bar";

  /** Column names in order of first appearance (the JSON rows may leave out null fields). */
  function columnsOf(rows) {
    const seen = new Set();
    for (const r of rows.slice(0, 200)) for (const k of Object.keys(r)) seen.add(k);
    for (const r of rows.slice(200)) for (const k of Object.keys(r)) seen.add(k);
    return [...seen];
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function cell(v) {
    if (v == null) return el("span", { style: "color:var(--faint)" }, "NULL");
    if (typeof v === "object") return JSON.stringify(v);
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toFixed(6));
    return String(v);
  }

  function renderTable(rows, columns) {
    const shown = rows.slice(0, MAX_TABLE_ROWS);
    const numeric = new Set(columns.filter((c) => shown.some((r) => isNum(r[c])) && shown.every((r) => r[c] == null || isNum(r[c]))));
    $("#result").replaceChildren(
      el(
        "table.data",
        {},
        el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: numeric.has(c) ? "num" : null }, c)))),
        el(
          "tbody",
          {},
          shown.map((r) => el("tr", { "data-testid": "result-row" }, columns.map((c) => el("td", { class: numeric.has(c) ? "num" : null }, cell(r[c])))))
        )
      )
    );
    $("#table-sub").textContent =
      rows.length > MAX_TABLE_ROWS ? `first ${fmt.int(MAX_TABLE_ROWS)} of ${fmt.int(rows.length)} rows (export CSV for all)` : `${fmt.int(rows.length)} rows`;
    $("#table-panel").hidden = false;
  }

  function renderChart() {
    const panel = $("#chart-panel");
    if (!last || !window.echarts || chartType.value === "none" || last.rows.length === 0 || last.columns.length < 2) {
      panel.hidden = true;
      return;
    }
    const [x, ...rest] = last.columns;
    const series = rest.filter((c) => last.rows.some((r) => isNum(r[c])) && last.rows.every((r) => r[c] == null || isNum(r[c])));
    if (!series.length) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const rows = last.rows.slice(0, MAX_CHART_POINTS);
    $("#chart-sub").textContent =
      `x: ${x} · series: ${series.join(", ")}` + (last.rows.length > MAX_CHART_POINTS ? ` · first ${fmt.int(MAX_CHART_POINTS)} rows` : "");
    if (chart && chart.__dark !== S.isDark()) {
      chart.dispose();
      chart = null;
    }
    if (!chart) {
      chart = echarts.init($("#chart"), S.chartTheme());
      chart.__dark = S.isDark();
    }
    const ink = S.chartInk();
    const axis = {
      axisLine: { lineStyle: { color: ink.border } },
      axisTick: { show: false },
      axisLabel: { color: ink.muted },
      splitLine: { lineStyle: { color: ink.border, type: "dashed" } },
    };
    const type = chartType.value;
    // Two y axes when the second series is on a very different scale from the first.
    const maxOf = (c) => Math.max(...rows.map((r) => Math.abs(r[c] || 0)));
    const dual = series.length === 2 && maxOf(series[0]) > 0 && maxOf(series[1]) > 0 &&
      Math.max(maxOf(series[0]) / maxOf(series[1]), maxOf(series[1]) / maxOf(series[0])) > 20;
    chart.setOption(
      {
        backgroundColor: "transparent",
        color: S.palette(),
        textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
        tooltip: { trigger: "axis", confine: true },
        legend: { top: 0, right: 0, textStyle: { color: ink.muted }, icon: "roundRect", itemWidth: 12, itemHeight: 8 },
        grid: { left: 8, right: 8, top: 34, bottom: rows.length > 60 ? 44 : 8, containLabel: true },
        xAxis: {
          type: "category",
          data: rows.map((r) => (r[x] == null ? "NULL" : String(r[x]))),
          ...axis,
          splitLine: { show: false },
          // Every label while there are few; slanted when they would crowd.
          axisLabel: {
            color: ink.muted,
            interval: rows.length <= 24 ? 0 : "auto",
            rotate: rows.length > 8 && rows.length <= 24 && rows.some((r) => String(r[x]).length > 6) ? 30 : 0,
            hideOverlap: true,
          },
        },
        yAxis: dual ? [{ type: "value", ...axis }, { type: "value", ...axis, splitLine: { show: false } }] : { type: "value", ...axis },
        dataZoom: rows.length > 60 ? [{ type: "inside" }, { type: "slider", height: 18, bottom: 6 }] : [],
        series: series.map((c, i) => ({
          name: c,
          type,
          yAxisIndex: dual ? i : 0,
          data: rows.map((r) => r[c] ?? null),
          showSymbol: rows.length < 50,
          smooth: type === "line" ? 0.2 : undefined,
          barMaxWidth: 32,
          itemStyle: type === "bar" ? { borderRadius: [3, 3, 0, 0] } : undefined,
        })),
      },
      true
    );
  }

  function showError(message) {
    const box = $("#error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function run() {
    const sql = input.value.trim();
    if (!sql) return;
    localStorage.setItem(SQL_KEY, input.value);
    const btn = $("#run");
    btn.disabled = true;
    $("#meta").textContent = "Running…";
    showError("");
    const t0 = performance.now();
    try {
      const rows = await S.api("/api/sql", { method: "POST", body: sql });
      const ms = performance.now() - t0;
      const columns = columnsOf(rows);
      last = { sql, rows, columns };
      $("#meta").textContent = `${fmt.int(rows.length)} row${rows.length === 1 ? "" : "s"} · ${columns.length} column${columns.length === 1 ? "" : "s"} · ${ms.toFixed(0)} ms`;
      renderTable(rows, columns);
      renderChart();
      $("#export").disabled = false;
      document.body.dataset.result = "ok";
    } catch (e) {
      last = null;
      $("#meta").textContent = "";
      showError(e.message);
      $("#table-panel").hidden = true;
      $("#chart-panel").hidden = true;
      $("#export").disabled = true;
      document.body.dataset.result = "error";
    } finally {
      btn.disabled = false;
      document.body.dataset.runs = String(++runs);
    }
  }

  $("#run").addEventListener("click", run);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  chartType.addEventListener("change", () => {
    localStorage.setItem(CHART_KEY, chartType.value);
    renderChart();
  });
  $("#export").addEventListener("click", async () => {
    if (!last) return;
    try {
      await S.downloadCsv("/api/sql?format=csv", "shopstream-query.csv", { method: "POST", body: last.sql });
    } catch (e) {
      showError(e.message);
    }
  });

  // Sidebar: tables (with their columns, from one row each) and example statements.
  function useSql(sql) {
    input.value = sql;
    run();
  }
  function showTables(columns) {
    const names = [...columns.keys()].sort((a, b) => {
      const [ia, ib] = [BUILT_IN.indexOf(a), BUILT_IN.indexOf(b)];
      if (ia >= 0 || ib >= 0) return (ia < 0 ? BUILT_IN.length : ia) - (ib < 0 ? BUILT_IN.length : ib);
      return a.localeCompare(b);
    });
    $("#tables").replaceChildren(
      ...names.map((t) =>
        el(
          "li",
          {},
          el("button", { type: "button", title: `SELECT * FROM ${t} LIMIT 100`, onclick: () => useSql(`SELECT * FROM ${t} LIMIT 100`) }, t),
          el("div.cols", {}, columns.get(t).join(", "))
        )
      )
    );
  }
  $("#examples").replaceChildren(...EXAMPLES.map(([name, sql]) => el("li", {}, el("button", { type: "button", onclick: () => useSql(sql) }, name))));
  S.api("/api/sql", { method: "POST", body: COLUMNS_SQL })
    .then((rows) => {
      const columns = new Map();
      for (const r of rows) {
        if (!columns.has(r.table_name)) columns.set(r.table_name, []);
        columns.get(r.table_name).push(r.column_name);
      }
      showTables(columns);
    })
    .catch(() => showTables(new Map(BUILT_IN.map((t) => [t, []]))));

  let resizeTimer;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => chart?.resize(), 100);
  });

  S.initTheme(() => renderChart());
  document.addEventListener("DOMContentLoaded", run, { once: true });
})();
