// app.js — the dashboard page (index.html): filters (period presets relative to the data's last day, country),
// KPI cards with the change against the previous period, charts (ECharts) and tables for every panel of
// /api/panels/…, click-to-filter, a drill-down drawer (country → customers → invoices → invoice lines), CSV export
// per panel, auto-refresh while data flows, and dark mode. The filter state lives in the URL hash.
//
// For tests: `body[data-loaded="1"]` once every panel has answered, `body[data-loaded-at]` counts completed
// refreshes, `body[data-loading]` is set while one runs, `body[data-loaded-ms]` is when the first one finished
// (performance.now()); the drawer has `data-level` (customers, invoices, lines) and `data-ready`.
"use strict";

(function () {
  const S = window.Shop;
  const { el, $, $$, fmt } = S;

  // ---------- state ----------

  const PRESETS = ["all", "7d", "30d", "90d", "12m", "this_month", "prev_month", "custom"];
  const DEFAULTS = { preset: "90d", country: "", grain: "week", from: "", to: "" };
  const AUTO_KEY = "shopstream.autoRefresh";

  /** Filter state; `from`/`to` are the custom range's inputs (both inclusive), used when preset is "custom". */
  const state = Object.assign({}, DEFAULTS, readHash());
  if (!PRESETS.includes(state.preset)) state.preset = DEFAULTS.preset;
  if (!["day", "week", "month"].includes(state.grain)) state.grain = DEFAULTS.grain;

  let span = null; // {first_day, last_day, lines} of all the data (no filter)
  let range = { from: null, to: null }; // the active range as the API takes it (to exclusive)
  let allCountries = []; // for the select, all time
  const data = {}; // last rows of each panel, to redraw on a theme change
  let generation = 0; // refresh counter; stale answers are dropped
  let completed = 0; // refreshes that finished (data-loaded-at)
  let controller = null; // aborts the previous refresh's requests
  let failures = 0; // panels that failed in the last refresh (auto-refresh retries them)

  function readHash() {
    const out = {};
    for (const [k, v] of new URLSearchParams(location.hash.slice(1))) if (k in DEFAULTS) out[k] = v;
    return out;
  }

  function writeHash() {
    const q = new URLSearchParams();
    for (const k of Object.keys(DEFAULTS)) {
      if (k === "from" || k === "to") {
        if (state.preset === "custom" && state[k]) q.set(k, state[k]);
      } else if (state[k] !== DEFAULTS[k]) q.set(k, state[k]);
    }
    const h = q.toString();
    history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
  }

  // ---------- dates (UTC, YYYY-MM-DD) ----------

  const parseDay = (s) => new Date(String(s).slice(0, 10) + "T00:00:00Z");
  const dayStr = (d) => d.toISOString().slice(0, 10);
  const addDays = (d, n) => new Date(d.getTime() + n * 86400000);
  const addMonths = (d, n) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, d.getUTCDate()));
  const monthStart = (d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));

  /** The range of a preset, relative to the data's last day (the data is historical). */
  function computeRange() {
    if (state.preset === "custom") {
      return {
        from: state.from || null,
        to: state.to ? dayStr(addDays(parseDay(state.to), 1)) : null,
      };
    }
    if (state.preset === "all" || !span || !span.last_day) return { from: null, to: null };
    const last = parseDay(span.last_day);
    const end = addDays(last, 1);
    switch (state.preset) {
      case "7d": return { from: dayStr(addDays(end, -7)), to: dayStr(end) };
      case "30d": return { from: dayStr(addDays(end, -30)), to: dayStr(end) };
      case "90d": return { from: dayStr(addDays(end, -90)), to: dayStr(end) };
      case "12m": return { from: dayStr(addMonths(end, -12)), to: dayStr(end) };
      case "this_month": return { from: dayStr(monthStart(last)), to: dayStr(end) };
      case "prev_month": return { from: dayStr(addMonths(monthStart(last), -1)), to: dayStr(monthStart(last)) };
    }
    return { from: null, to: null };
  }

  function rangeText() {
    const f = range.from || span?.first_day;
    const t = range.to ? dayStr(addDays(parseDay(range.to), -1)) : span?.last_day;
    if (!f || !t) return "";
    const opts = { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" };
    const d = (s) => parseDay(s).toLocaleDateString("en-GB", opts);
    return d(f) + " – " + d(t);
  }

  // ---------- panel requests ----------

  /** Query parameters of each panel under the current filters (the countries ranking ignores the country). */
  function panelParams(name) {
    const base = { from: range.from, to: range.to };
    const withCountry = { ...base, country: state.country };
    switch (name) {
      case "countries": return base;
      case "revenue_over_time": return { ...withCountry, grain: state.grain };
      case "top_products":
      case "top_customers": return { ...withCountry, n: 10 };
      default: return withCountry;
    }
  }

  const panelUrl = (name, extra) => "/api/panels/" + name + S.query({ ...panelParams(name), ...extra });

  function fileName(name) {
    const parts = [name, range.from || "start", range.to || "end"];
    if (state.country && name !== "countries") parts.push(state.country.replace(/[^A-Za-z0-9]+/g, "_"));
    return "shopstream-" + parts.join("_") + ".csv";
  }

  // ---------- charts ----------

  const charts = {};
  const chartsReady = window.echarts
    ? Promise.resolve()
    : new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  const worldReady = fetch("/assets/world.json")
    .then((r) => r.json())
    .then(async (geo) => {
      await chartsReady;
      echarts.registerMap("world", geo);
      return new Set(geo.features.map((f) => f.properties.name));
    });

  /** The chart in element `id`, created on first use with the current theme; `setup(chart)` runs once then. */
  function chart(id, setup) {
    if (!charts[id]) {
      charts[id] = echarts.init(document.getElementById(id), S.chartTheme(), { renderer: "canvas" });
      if (setup) setup(charts[id]);
    }
    return charts[id];
  }

  /** Options every chart shares: transparent background (the card shows through), palette, fonts. */
  function baseOption() {
    return {
      backgroundColor: "transparent",
      color: S.palette(),
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      tooltip: { confine: true },
      animationDuration: 400,
    };
  }

  function axisStyle(ink) {
    return {
      axisLine: { lineStyle: { color: ink.border } },
      axisTick: { show: false },
      axisLabel: { color: ink.muted },
      splitLine: { lineStyle: { color: ink.border, type: "dashed" } },
    };
  }

  new ResizeObserver(() => Object.values(charts).forEach((c) => c.resize())).observe(document.body);

  // ---------- loading state of panels ----------

  function panelEl(name) {
    return $(`[data-panel="${name}"]`);
  }

  function setPanelError(name, err) {
    const p = panelEl(name);
    if (!p) return;
    $(".panel-error", p)?.remove();
    if (err) $(".panel-body", p).prepend(el("div.panel-error", { "data-testid": "panel-error" }, String(err.message || err)));
  }

  // ---------- renderers ----------

  const KPI_FORMAT = {
    revenue: fmt.moneyShort,
    orders: fmt.int,
    average_order_value: fmt.money,
    units: fmt.intShort,
    customers: fmt.int,
    repeat_customer_rate: (v) => fmt.pct(v),
    cancellation_rate: (v) => fmt.pct(v),
  };
  const KPI_FULL = { revenue: fmt.money, units: fmt.int };
  const LOWER_IS_BETTER = new Set(["cancellation_rate"]);
  const RATES = new Set(["repeat_customer_rate", "cancellation_rate"]);

  function renderKpis(rows) {
    for (const card of $$(".kpi")) {
      const metric = card.dataset.metric;
      const row = rows.find((r) => r.metric === metric);
      const value = row?.value ?? null;
      const prev = row?.previous ?? null;
      card.dataset.value = value == null ? "" : String(value);
      card.dataset.previous = prev == null ? "" : String(prev);
      const valueEl = $(".kpi-value", card);
      valueEl.textContent = KPI_FORMAT[metric](value);
      valueEl.title = (KPI_FULL[metric] || KPI_FORMAT[metric])(value);
      const delta = $(".kpi-delta", card);
      delta.className = "kpi-delta";
      if (prev == null || value == null) {
        delta.textContent = range.from && range.to ? "no previous data" : "no comparison";
        delta.title = "";
        continue;
      }
      let text, change;
      if (RATES.has(metric)) {
        change = value - prev;
        text = (change >= 0 ? "+" : "−") + Math.abs(change * 100).toFixed(1) + " pp";
      } else if (prev === 0) {
        change = value;
        text = value === 0 ? "0%" : "new";
      } else {
        change = (value - prev) / Math.abs(prev);
        text = (change >= 0 ? "+" : "−") + Math.abs(change * 100).toFixed(1) + "%";
      }
      const up = change > 0, flat = Math.abs(change) < 1e-9;
      if (!flat) delta.classList.add(up !== LOWER_IS_BETTER.has(metric) ? "good" : "bad");
      delta.replaceChildren(
        el("span.arrow", {}, flat ? "■ " : up ? "▲ " : "▼ "),
        text,
        el("span.vs", {}, " vs prev.")
      );
      delta.title = "Previous period: " + (KPI_FULL[metric] || KPI_FORMAT[metric])(prev);
    }
  }

  function periodLabel(p, long) {
    const d = parseDay(p);
    if (state.grain === "month") return d.toLocaleDateString("en-GB", { month: long ? "long" : "short", year: long ? "numeric" : "2-digit", timeZone: "UTC" });
    const s = d.toLocaleDateString("en-GB", { day: "numeric", month: "short", year: long ? "numeric" : undefined, timeZone: "UTC" });
    return long && state.grain === "week" ? "Week of " + s : s;
  }

  function renderRevenue(rows) {
    const base = baseOption(), ink = S.chartInk();
    const zoom = rows.length > 70;
    chart("chart-revenue").setOption(
      {
        ...base,
        legend: { top: 0, right: 0, textStyle: { color: ink.muted }, icon: "roundRect", itemWidth: 12, itemHeight: 8 },
        tooltip: {
          trigger: "axis",
          confine: true,
          axisPointer: { type: "shadow" },
          formatter: (ps) =>
            `<b>${periodLabel(rows[ps[0].dataIndex].period, true)}</b><br>` +
            ps.map((p) => `${p.marker} ${p.seriesName}: <b>${p.seriesIndex === 0 ? fmt.money(p.value) : fmt.int(p.value)}</b>`).join("<br>"),
        },
        grid: { left: 8, right: 8, top: 36, bottom: zoom ? 44 : 8, containLabel: true },
        xAxis: { type: "category", data: rows.map((r) => periodLabel(r.period)), ...axisStyle(ink), splitLine: { show: false } },
        yAxis: [
          { type: "value", ...axisStyle(ink), axisLabel: { color: ink.muted, formatter: fmt.moneyShort } },
          { type: "value", ...axisStyle(ink), splitLine: { show: false }, axisLabel: { color: ink.muted, formatter: fmt.intShort } },
        ],
        dataZoom: zoom ? [{ type: "inside" }, { type: "slider", height: 18, bottom: 6, borderColor: ink.border }] : [],
        series: [
          {
            name: "Revenue",
            type: "line",
            smooth: 0.25,
            showSymbol: rows.length < 40,
            symbolSize: 5,
            lineStyle: { width: 2.5 },
            areaStyle: { opacity: 0.12 },
            z: 3,
            data: rows.map((r) => r.revenue),
          },
          {
            name: "Orders",
            type: "bar",
            yAxisIndex: 1,
            barMaxWidth: 26,
            itemStyle: { opacity: 0.45, borderRadius: [3, 3, 0, 0] },
            data: rows.map((r) => r.orders),
          },
        ],
      },
      true
    );
  }

  // Dataset names → the map's region names; tiny places the 110m map lacks get a marker; the rest are listed only.
  const MAP_NAME = {
    EIRE: "Ireland",
    USA: "United States of America",
    RSA: "South Africa",
    "Czech Republic": "Czechia",
  };
  const MAP_POINTS = {
    "Channel Islands": [-2.3, 49.35],
    Singapore: [103.82, 1.35],
    "Hong Kong": [114.17, 22.32],
    Bahrain: [50.56, 26.07],
    Malta: [14.45, 35.9],
  };

  // Map framing: the inhabited world, or Europe (where most of the customers are); remembered.
  const MAP_VIEWS = {
    world: [[-140, 76], [165, -50]],
    europe: [[-26, 70], [42, 34]],
  };
  let mapView = localStorage.getItem("shopstream.mapView") === "europe" ? "europe" : "world";

  function syncMapView() {
    $$("#map-view button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === mapView)));
  }

  $$("#map-view button").forEach((b) =>
    b.addEventListener("click", () => {
      mapView = b.dataset.view;
      localStorage.setItem("shopstream.mapView", mapView);
      syncMapView();
      if (data.countries) renderMap(data.countries);
    })
  );
  syncMapView();

  async function renderMap(rows) {
    const regions = await worldReady;
    const base = baseOption(), ink = S.chartInk();
    const accent = S.palette()[0];
    const offMap = [];
    const areas = [], points = [];
    for (const r of rows) {
      const name = MAP_NAME[r.country] || r.country;
      const item = { country: r.country, revenue: r.revenue, orders: r.orders, customers: r.customers };
      if (regions.has(name)) areas.push({ name, value: Math.log10(Math.max(r.revenue, 1)), ...item });
      else if (MAP_POINTS[r.country]) points.push({ name: r.country, value: [...MAP_POINTS[r.country], r.revenue], ...item });
      else offMap.push(r.country);
    }
    const maxLog = Math.max(1, ...areas.map((a) => a.value));
    const minLog = Math.min(maxLog - 0.5, ...areas.map((a) => a.value));
    const selectedName = state.country ? MAP_NAME[state.country] || state.country : null;
    const tip = (d) =>
      d && d.country
        ? `<b>${d.country}</b><br>Revenue: <b>${fmt.money(d.revenue)}</b><br>Orders: ${fmt.int(d.orders)}<br>Customers: ${fmt.int(d.customers)}`
        : null;
    const setup = (c) =>
      c.on("click", (p) => {
        const country = p.data && p.data.country;
        if (country) pickCountry(country);
      });
    chart("chart-map", setup).setOption(
      {
        ...base,
        tooltip: { trigger: "item", confine: true, formatter: (p) => tip(p.data) || p.name + "<br><span style='opacity:.7'>no sales</span>" },
        visualMap: {
          type: "continuous",
          seriesIndex: 0,
          min: minLog,
          max: maxLog,
          left: 8,
          bottom: 8,
          itemHeight: 90,
          itemWidth: 10,
          text: [fmt.moneyShort(10 ** maxLog), fmt.moneyShort(10 ** minLog)],
          textStyle: { color: ink.muted, fontSize: 11 },
          calculable: false,
          inRange: { color: S.isDark() ? ["#26314f", "#4d63c9", "#9fb2ff"] : ["#dfe6ff", "#8ea0f5", "#2f49c9"] },
        },
        geo: {
          map: "world",
          roam: true,
          scaleLimit: { min: 0.8, max: 14 },
          boundingCoords: MAP_VIEWS[mapView],
          left: 0,
          right: 0,
          top: 4,
          bottom: 4,
          itemStyle: { areaColor: S.isDark() ? "#232a3a" : "#eceff5", borderColor: S.isDark() ? "#323a4d" : "#ffffff", borderWidth: 0.6 },
          emphasis: { label: { show: false }, itemStyle: { areaColor: S.isDark() ? "#f7b955" : "#f79009" } },
          select: { disabled: true },
          regions: selectedName ? [{ name: selectedName, itemStyle: { borderColor: S.isDark() ? "#fff" : "#1b2233", borderWidth: 1.6 } }] : [],
        },
        series: [
          { type: "map", geoIndex: 0, data: areas },
          {
            type: "scatter",
            coordinateSystem: "geo",
            symbolSize: 9,
            itemStyle: { color: accent, borderColor: S.isDark() ? "#fff" : "#1b2233", borderWidth: 1 },
            data: points,
          },
        ],
      },
      true
    );
    $("#map-note").textContent = offMap.length ? "Not on the map: " + offMap.join(", ") : "";
  }

  /** A table: columns [{label, cls, value(row, i)}]; rows get attributes from rowAttrs(row) and a click handler. */
  function table(columns, rows, { rowAttrs, onClick } = {}) {
    return el(
      "table.data",
      {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.cls || null }, c.label)))),
      el(
        "tbody",
        {},
        rows.map((r, i) => {
          const tr = el("tr", rowAttrs ? rowAttrs(r, i) : {}, columns.map((c) => el("td", { class: c.cls || null }, c.value(r, i))));
          if (onClick) {
            tr.classList.add("clickable");
            tr.addEventListener("click", () => onClick(r));
          }
          return tr;
        })
      )
    );
  }

  function barCell(value, max, text) {
    const w = max > 0 ? Math.max(1, (100 * value) / max) : 0;
    return el("div.bar-cell", {}, el("span.bar", {}, el("i", { style: `width:${w}%` })), el("span", {}, text));
  }

  function renderCountries(rows) {
    const total = rows.reduce((s, r) => s + (r.revenue || 0), 0);
    const max = Math.max(0, ...rows.map((r) => r.revenue));
    const box = $("#countries-table");
    if (!rows.length) return box.replaceChildren(el("div.empty", {}, "No sales in this period"));
    box.replaceChildren(
      table(
        [
          { label: "#", cls: "rank", value: (_, i) => i + 1 },
          { label: "Country", value: (r) => r.country },
          { label: "Revenue", cls: "num", value: (r) => barCell(r.revenue, max, fmt.moneyShort(r.revenue)) },
          { label: "Share", cls: "num muted", value: (r) => fmt.pct(total ? r.revenue / total : 0) },
          { label: "Orders", cls: "num", value: (r) => fmt.int(r.orders) },
          { label: "Customers", cls: "num", value: (r) => fmt.int(r.customers) },
        ],
        rows,
        {
          rowAttrs: (r) => ({
            "data-testid": "country-row",
            "data-country": r.country,
            class: r.country === state.country ? "selected" : null,
            title: "Filter by " + r.country + " and show its customers",
          }),
          onClick: (r) => pickCountry(r.country),
        }
      )
    );
    // Bring the selected country into view inside the table only (scrollIntoView would move the page too).
    const sel = box.querySelector("tr.selected");
    if (sel && (sel.offsetTop < box.scrollTop + 30 || sel.offsetTop > box.scrollTop + box.clientHeight - 40))
      box.scrollTop = sel.offsetTop - box.clientHeight / 2;
  }

  const RFM_ORDER = ["champions", "loyal", "recent", "at risk", "hibernating"];

  function renderRfm(rows) {
    const base = baseOption(), ink = S.chartInk();
    const sorted = [...rows].sort((a, b) => RFM_ORDER.indexOf(a.segment) - RFM_ORDER.indexOf(b.segment));
    const tc = sorted.reduce((s, r) => s + r.customers, 0) || 1;
    const tr = sorted.reduce((s, r) => s + r.revenue, 0) || 1;
    const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
    chart("chart-rfm").setOption(
      {
        ...base,
        legend: { top: 0, right: 0, textStyle: { color: ink.muted }, icon: "roundRect", itemWidth: 12, itemHeight: 8 },
        tooltip: {
          trigger: "axis",
          confine: true,
          axisPointer: { type: "shadow" },
          formatter: (ps) => {
            const r = sorted[ps[0].dataIndex];
            return `<b>${cap(r.segment)}</b><br>Customers: <b>${fmt.int(r.customers)}</b> (${fmt.pct(r.customers / tc)})<br>Revenue: <b>${fmt.money(r.revenue)}</b> (${fmt.pct(r.revenue / tr)})`;
          },
        },
        grid: { left: 4, right: 8, top: 32, bottom: 4, containLabel: true },
        xAxis: { type: "category", data: sorted.map((r) => cap(r.segment)), ...axisStyle(ink), splitLine: { show: false }, axisLabel: { color: ink.muted, interval: 0, fontSize: 11 } },
        yAxis: { type: "value", max: 100, ...axisStyle(ink), axisLabel: { color: ink.muted, formatter: "{value}%" } },
        series: [
          { name: "Customers", type: "bar", barGap: "10%", barMaxWidth: 22, itemStyle: { borderRadius: [3, 3, 0, 0] }, data: sorted.map((r) => +((100 * r.customers) / tc).toFixed(1)) },
          { name: "Revenue", type: "bar", barMaxWidth: 22, itemStyle: { borderRadius: [3, 3, 0, 0] }, data: sorted.map((r) => +((100 * r.revenue) / tr).toFixed(1)) },
        ],
      },
      true
    );
  }

  function renderNewVsReturning(rows) {
    const base = baseOption(), ink = S.chartInk();
    const get = (k) => rows.find((r) => r.customers === k)?.count || 0;
    const [c0, c1] = S.palette();
    const items = [
      { name: "Returning", value: get("returning"), itemStyle: { color: c0 } },
      { name: "New", value: get("new"), itemStyle: { color: c1 } },
    ];
    const total = items[0].value + items[1].value;
    chart("chart-nvr").setOption(
      {
        ...base,
        tooltip: { trigger: "item", confine: true, formatter: (p) => `${p.marker} ${p.name}: <b>${fmt.int(p.value)}</b> (${p.percent}%)` },
        legend: { bottom: 0, textStyle: { color: ink.muted }, icon: "circle", itemWidth: 9 },
        title: {
          text: fmt.int(total),
          subtext: "customers",
          left: "center",
          top: "34%",
          textStyle: { color: ink.text, fontSize: 20, fontWeight: 700 },
          subtextStyle: { color: ink.muted, fontSize: 12 },
          itemGap: 6,
        },
        series: [
          {
            type: "pie",
            radius: ["52%", "74%"],
            center: ["50%", "45%"],
            avoidLabelOverlap: true,
            itemStyle: { borderColor: ink.card, borderWidth: 2 },
            label: { show: true, formatter: "{d}%", color: ink.muted },
            labelLine: { length: 6, length2: 6 },
            // A zero slice keeps its legend entry but gets no "0%" label.
            data: items.map((i) => (i.value > 0 ? i : { ...i, label: { show: false }, labelLine: { show: false } })),
          },
        ],
      },
      true
    );
  }

  function renderBasket(rows) {
    const r = rows[0] || {};
    const stat = (label, value, wide, testid) =>
      el(wide ? "div.stat.wide" : "div.stat", { "data-testid": testid }, el("div.label", {}, label), el("div.value", {}, value));
    $("#basket").replaceChildren(
      stat("Average order value", fmt.money(r.avg_value), true, "basket-avg_value"),
      stat("Orders", fmt.int(r.orders), false, "basket-orders"),
      stat("Avg units / order", fmt.dec(r.avg_units), false, "basket-avg_units"),
      stat("Avg lines / order", fmt.dec(r.avg_lines), false, "basket-avg_lines"),
      stat("Median lines / order", fmt.int(r.median_lines), false, "basket-median_lines")
    );
  }

  function renderProducts(rows) {
    const base = baseOption(), ink = S.chartInk();
    const short = (s) => {
      const t = String(s || "").trim();
      return t.length > 30 ? t.slice(0, 29) + "…" : t;
    };
    const items = [...rows].reverse(); // largest at the top
    chart("chart-products").setOption(
      {
        ...base,
        tooltip: {
          trigger: "axis",
          confine: true,
          axisPointer: { type: "shadow" },
          formatter: (ps) => {
            const r = items[ps[0].dataIndex];
            return `<b>${r.description || ""}</b><br><span style="opacity:.7">${r.stock_code}</span><br>Revenue: <b>${fmt.money(r.revenue)}</b><br>Units: ${fmt.int(r.units)}`;
          },
        },
        grid: { left: 4, right: 56, top: 4, bottom: 4, containLabel: true },
        xAxis: { type: "value", ...axisStyle(ink), axisLabel: { show: false }, splitLine: { show: false } },
        yAxis: {
          type: "category",
          data: items.map((r) => short(r.description) || r.stock_code),
          ...axisStyle(ink),
          axisLine: { show: false },
          axisLabel: { color: ink.text, fontSize: 11.5 },
        },
        series: [
          {
            type: "bar",
            barMaxWidth: 18,
            itemStyle: { borderRadius: [0, 4, 4, 0], color: S.palette()[1] },
            label: { show: true, position: "right", color: ink.muted, fontSize: 11, formatter: (p) => fmt.moneyShort(p.value) },
            data: items.map((r) => r.revenue),
          },
        ],
      },
      true
    );
  }

  function renderCustomers(rows) {
    const max = Math.max(0, ...rows.map((r) => r.revenue));
    const box = $("#customers-table");
    if (!rows.length) return box.replaceChildren(el("div.empty", {}, "No customers in this period"));
    box.replaceChildren(
      table(
        [
          { label: "#", cls: "rank", value: (_, i) => i + 1 },
          { label: "Customer", value: (r) => fmt.id(r.customer_id) },
          { label: "Country", cls: "muted", value: (r) => r.country },
          { label: "Orders", cls: "num", value: (r) => fmt.int(r.orders) },
          { label: "Revenue", cls: "num", value: (r) => barCell(r.revenue, max, fmt.money(r.revenue)) },
        ],
        rows,
        {
          rowAttrs: (r) => ({ "data-testid": "customer-row", "data-customer": fmt.id(r.customer_id), title: "Show this customer's invoices" }),
          onClick: (r) => openDrill({ level: "invoices", customer: fmt.id(r.customer_id), country: r.country }),
        }
      )
    );
  }

  const PANELS = {
    kpis: renderKpis,
    revenue_over_time: renderRevenue,
    countries: (rows) => Promise.all([renderCountries(rows), renderMap(rows)]),
    rfm_segments: renderRfm,
    new_vs_returning: renderNewVsReturning,
    basket_size: renderBasket,
    top_products: renderProducts,
    top_customers: renderCustomers,
  };

  /** Draws every panel again from the rows it last had (after a theme change). */
  function redrawAll() {
    for (const id of Object.keys(charts)) {
      charts[id].dispose();
      delete charts[id];
    }
    for (const [name, rows] of Object.entries(data)) if (rows) PANELS[name](rows);
  }

  // ---------- refresh ----------

  async function loadSpan(signal) {
    const rows = await S.api("/api/panels/date_range", { signal });
    span = rows[0] || null;
    return span;
  }

  async function loadCountryList(signal) {
    const rows = await S.api("/api/panels/countries", { signal });
    allCountries = rows.map((r) => r.country).sort((a, b) => a.localeCompare(b));
    fillCountrySelect();
  }

  function fillCountrySelect() {
    const sel = $("#country");
    const names = new Set(allCountries);
    if (state.country) names.add(state.country);
    const wanted = ["", ...[...names].sort((a, b) => a.localeCompare(b))];
    const have = $$("option", sel).map((o) => o.value);
    if (wanted.join("\n") !== have.join("\n")) {
      sel.replaceChildren(...wanted.map((c) => el("option", { value: c }, c || "All countries")));
    }
    sel.value = state.country;
  }

  /**
   * Fetches every panel in parallel under the current filters and draws each as it arrives. `quiet` (auto-refresh)
   * skips the loading bars. Resolves when all have answered; a newer refresh makes this one's answers stale.
   */
  async function refresh({ quiet = false, reloadSpan = true } = {}) {
    const myGen = ++generation;
    let failed = 0;
    controller?.abort();
    controller = new AbortController();
    const { signal } = controller;
    document.body.dataset.loading = "1";
    syncControls();
    try {
      // Relative presets need the data's last day first; the rest can start at once.
      const needsSpan = !["all", "custom"].includes(state.preset) || !span;
      const spanP = reloadSpan || !span ? loadSpan(signal) : Promise.resolve(span);
      if (needsSpan) await spanP.catch(() => null);
      if (myGen !== generation) return;
      range = computeRange();
      const countryListP = loadCountryList(signal).catch(() => {});
      const jobs = Object.keys(PANELS).map(async (name) => {
        const p = panelEl(name === "kpis" ? "__none" : name);
        const mapPanel = name === "countries" ? panelEl("map") : null;
        if (!quiet) [p, mapPanel].forEach((x) => x?.classList.add("loading"));
        try {
          const rows = await S.api(panelUrl(name), { signal });
          if (myGen !== generation) return;
          data[name] = rows;
          setPanelError(name, null);
          await chartsReady;
          await PANELS[name](rows);
        } catch (e) {
          if (e.name === "AbortError" || myGen !== generation) return;
          failed++;
          console.warn(name, e);
          if (name === "kpis") $$(".kpi .kpi-delta").forEach((d) => (d.textContent = "error: " + e.message));
          else setPanelError(name, e);
        } finally {
          [p, mapPanel].forEach((x) => x?.classList.remove("loading"));
        }
      });
      await Promise.allSettled([...jobs, spanP, countryListP]);
      if (myGen !== generation) return;
      failures = failed;
      $("#range-label").textContent = rangeText();
      completed++;
      if (completed === 1) document.body.dataset.loadedMs = String(Math.round(performance.now()));
      document.body.dataset.loaded = "1";
      document.body.dataset.loadedAt = String(completed);
      delete document.body.dataset.loading;
    } catch (e) {
      if (e.name !== "AbortError") console.error(e);
    }
  }

  // ---------- filters and controls ----------

  function syncControls() {
    $("#preset").value = state.preset;
    $("#custom-range").hidden = state.preset !== "custom";
    $("#range-label").hidden = state.preset === "custom"; // the date inputs show it
    $("#from").value = state.from || "";
    $("#to").value = state.to || "";
    fillCountrySelect();
    $$("#grain button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.grain === state.grain)));
    const chip = $("#country-chip");
    chip.replaceChildren(
      state.country
        ? el(
            "span.chip",
            { "data-testid": "country-chip" },
            state.country,
            el("button", { type: "button", title: "Clear the country filter", "data-testid": "clear-country", onclick: () => setCountry("") }, "×")
          )
        : ""
    );
    writeHash();
  }

  function setCountry(country) {
    if (state.country === country) return;
    state.country = country;
    refresh({ reloadSpan: false });
  }

  /** Click on a country (table row or map): filter every panel by it and open its customers. */
  function pickCountry(country) {
    setCountry(country);
    openDrill({ level: "customers", country });
  }

  $("#preset").addEventListener("change", (e) => {
    state.preset = e.target.value;
    if (state.preset === "custom" && !state.from && !state.to && range.from) {
      // Start the custom range from what was shown.
      state.from = range.from;
      state.to = range.to ? dayStr(addDays(parseDay(range.to), -1)) : "";
    }
    refresh({ reloadSpan: false });
  });
  for (const id of ["from", "to"])
    $("#" + id).addEventListener("change", (e) => {
      state[id] = e.target.value;
      refresh({ reloadSpan: false });
    });
  $("#country").addEventListener("change", (e) => setCountry(e.target.value));
  // A link or a typed URL that changes only the hash: take its filters.
  window.addEventListener("hashchange", () => {
    Object.assign(state, DEFAULTS, readHash());
    if (!PRESETS.includes(state.preset)) state.preset = DEFAULTS.preset;
    if (!["day", "week", "month"].includes(state.grain)) state.grain = DEFAULTS.grain;
    refresh({ reloadSpan: false });
  });
  $$("#grain button").forEach((b) =>
    b.addEventListener("click", async () => {
      if (state.grain === b.dataset.grain) return;
      state.grain = b.dataset.grain;
      syncControls();
      const p = panelEl("revenue_over_time");
      p.classList.add("loading");
      try {
        data.revenue_over_time = await S.api(panelUrl("revenue_over_time"));
        setPanelError("revenue_over_time", null);
        await chartsReady;
        renderRevenue(data.revenue_over_time);
      } catch (e) {
        setPanelError("revenue_over_time", e);
      } finally {
        p.classList.remove("loading");
      }
    })
  );

  // CSV export: the panel's own request with the current filters, as format=csv.
  $$("[data-export]").forEach((b) =>
    b.addEventListener("click", async () => {
      const name = b.dataset.export;
      b.disabled = true;
      try {
        await S.downloadCsv(panelUrl(name, { format: "csv" }), fileName(name));
      } catch (e) {
        alert("Export failed: " + e.message);
      } finally {
        b.disabled = false;
      }
    })
  );

  // ---------- drill-down drawer ----------

  const drill = { level: null, country: null, customer: null, invoice: null, csv: null, gen: 0 };
  const drawer = $("#drill");

  function closeDrill() {
    drawer.hidden = true;
    $("#drill-backdrop").hidden = true;
    drawer.dataset.level = "";
    drill.level = null;
  }

  $("#drill-close").addEventListener("click", closeDrill);
  $("#drill-backdrop").addEventListener("click", closeDrill);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !drawer.hidden) closeDrill();
  });
  $("#drill-export").addEventListener("click", async () => {
    if (!drill.csv) return;
    try {
      await S.downloadCsv(drill.csv.url, drill.csv.file, drill.csv.options);
    } catch (e) {
      alert("Export failed: " + e.message);
    }
  });

  function crumbs() {
    const parts = [el("span", {}, "Countries")];
    const link = (text, target) => el("button", { type: "button", onclick: () => openDrill(target) }, text);
    if (drill.country) {
      parts.push(el("span.sep", {}, "›"));
      parts.push(drill.level === "customers" ? el("span", {}, drill.country) : link(drill.country, { level: "customers", country: drill.country }));
    }
    if (drill.customer && drill.level !== "customers") {
      parts.push(el("span.sep", {}, "›"));
      parts.push(
        drill.level === "invoices"
          ? el("span", {}, "Customer " + drill.customer)
          : link("Customer " + drill.customer, { level: "invoices", customer: drill.customer, country: drill.country })
      );
    }
    if (drill.level === "lines") parts.push(el("span.sep", {}, "›"), el("span", {}, "Invoice " + drill.invoice));
    $("#drill-crumbs").replaceChildren(...parts);
  }

  function summary(pairs) {
    $("#drill-summary").replaceChildren(...pairs.map(([k, v]) => el("span", {}, k + " ", el("b", {}, v))));
  }

  /** Opens the drawer at `target.level`: "customers" of a country, "invoices" of a customer, "lines" of an invoice. */
  async function openDrill(target) {
    Object.assign(drill, { country: null, customer: null, invoice: null }, target);
    const myGen = ++drill.gen;
    drawer.hidden = false;
    $("#drill-backdrop").hidden = false;
    drawer.dataset.level = drill.level;
    drawer.dataset.ready = "0";
    crumbs();
    const body = $("#drill-body");
    body.replaceChildren(el("div.drawer-hint", {}, "Loading…"));
    summary([]);
    const period = rangeText();
    try {
      if (drill.level === "customers") {
        $("#drill-title").textContent = drill.country;
        const params = { from: range.from, to: range.to, country: drill.country, n: 50 };
        const url = "/api/panels/top_customers" + S.query(params);
        drill.csv = { url: "/api/panels/top_customers" + S.query({ ...params, format: "csv" }), file: "shopstream-customers_" + drill.country.replace(/\W+/g, "_") + ".csv" };
        const [rows, crow] = await Promise.all([
          S.api(url),
          S.api("/api/panels/countries" + S.query({ from: range.from, to: range.to, country: drill.country })).then((r) => r[0]),
        ]);
        if (myGen !== drill.gen) return;
        summary([
          ["Revenue", fmt.money(crow?.revenue)],
          ["Orders", fmt.int(crow?.orders)],
          ["Customers", fmt.int(crow?.customers)],
          ["Period", period],
        ]);
        const max = Math.max(0, ...rows.map((r) => r.revenue));
        body.replaceChildren(
          el("div.drawer-hint", {}, rows.length ? `Top ${rows.length} customers by revenue · click one for their invoices` : "No identified customers in this period"),
          el(
            "div.table-wrap",
            {},
            table(
              [
                { label: "#", cls: "rank", value: (_, i) => i + 1 },
                { label: "Customer", value: (r) => fmt.id(r.customer_id) },
                { label: "Orders", cls: "num", value: (r) => fmt.int(r.orders) },
                { label: "Revenue", cls: "num", value: (r) => barCell(r.revenue, max, fmt.money(r.revenue)) },
              ],
              rows,
              {
                rowAttrs: (r) => ({ "data-testid": "drill-row", "data-customer": fmt.id(r.customer_id) }),
                onClick: (r) => openDrill({ level: "invoices", customer: fmt.id(r.customer_id), country: drill.country }),
              }
            )
          )
        );
      } else if (drill.level === "invoices") {
        $("#drill-title").textContent = "Customer " + drill.customer;
        const params = { from: range.from, to: range.to, customer: drill.customer, n: 100 };
        drill.csv = { url: "/api/panels/invoices" + S.query({ ...params, format: "csv" }), file: "shopstream-invoices_" + drill.customer + ".csv" };
        const rows = await S.api("/api/panels/invoices" + S.query(params));
        if (myGen !== drill.gen) return;
        const sales = rows.filter((r) => !r.cancelled);
        summary([
          ["Invoices", fmt.int(rows.length) + (rows.length >= 100 ? " (newest 100)" : "")],
          ["Revenue", fmt.money(sales.reduce((s, r) => s + r.revenue, 0))],
          ["Cancelled", fmt.int(rows.length - sales.length)],
          ["Country", rows[0]?.country || drill.country || "–"],
        ]);
        body.replaceChildren(
          el("div.drawer-hint", {}, rows.length ? "Newest first · click an invoice for its lines" : "No invoices in this period"),
          el(
            "div.table-wrap",
            {},
            table(
              [
                { label: "Invoice", value: (r) => r.invoice_no },
                { label: "Date", cls: "muted", value: (r) => fmt.datetime(r.invoice_date) },
                { label: "Lines", cls: "num", value: (r) => fmt.int(r.lines) },
                { label: "Units", cls: "num", value: (r) => fmt.int(r.units) },
                { label: "Revenue", cls: "num", value: (r) => fmt.money(r.revenue) },
                { label: "", value: (r) => (r.cancelled ? el("span.tag", {}, "cancelled") : "") },
              ],
              rows,
              {
                rowAttrs: (r) => ({ "data-testid": "drill-row", "data-invoice": r.invoice_no, class: r.cancelled ? "cancelled" : null }),
                onClick: (r) => openDrill({ level: "lines", invoice: r.invoice_no, customer: drill.customer, country: drill.country }),
              }
            )
          )
        );
      } else if (drill.level === "lines") {
        $("#drill-title").textContent = "Invoice " + drill.invoice;
        const sql =
          "SELECT stock_code, description, quantity, unit_price, line_revenue, invoice_date FROM orders " +
          "WHERE invoice_no = '" + String(drill.invoice).replace(/'/g, "''") + "' ORDER BY line_revenue DESC, stock_code";
        drill.csv = { url: "/api/sql?format=csv", file: "shopstream-invoice_" + drill.invoice + ".csv", options: { method: "POST", body: sql } };
        const rows = await S.api("/api/sql", { method: "POST", body: sql });
        if (myGen !== drill.gen) return;
        summary([
          ["Lines", fmt.int(rows.length)],
          ["Units", fmt.int(rows.reduce((s, r) => s + r.quantity, 0))],
          ["Total", fmt.money(rows.reduce((s, r) => s + r.line_revenue, 0))],
          ["Date", fmt.datetime(rows[0]?.invoice_date)],
        ]);
        body.replaceChildren(
          el(
            "div.table-wrap",
            {},
            table(
              [
                { label: "Code", cls: "muted", value: (r) => r.stock_code },
                { label: "Description", cls: "wrap", value: (r) => r.description || "" },
                { label: "Qty", cls: "num", value: (r) => fmt.int(r.quantity) },
                { label: "Unit price", cls: "num", value: (r) => fmt.money(r.unit_price) },
                { label: "Revenue", cls: "num", value: (r) => fmt.money(r.line_revenue) },
              ],
              rows,
              { rowAttrs: (r) => ({ "data-testid": "drill-row", "data-stock-code": r.stock_code }) }
            )
          )
        );
      }
      drawer.dataset.ready = "1";
    } catch (e) {
      if (myGen !== drill.gen) return;
      body.replaceChildren(el("div.panel-error", {}, e.message));
      drawer.dataset.ready = "error";
    }
  }

  // ---------- auto-refresh ----------

  const live = $("[data-testid=live]");
  const autoBtn = $("[data-testid=auto-refresh]");
  let auto = localStorage.getItem(AUTO_KEY) !== "off";
  let lastSeen = null; // {lines, commits} last polled
  let lastChange = 0;

  function setLive(stateName, text, title) {
    live.dataset.state = stateName;
    $(".live-text", live).textContent = text;
    live.title = title || "";
  }

  function syncAuto() {
    autoBtn.setAttribute("aria-pressed", String(auto));
    if (!auto) setLive("idle", "Paused", "Auto-refresh is off");
  }

  autoBtn.addEventListener("click", () => {
    auto = !auto;
    localStorage.setItem(AUTO_KEY, auto ? "on" : "off");
    syncAuto();
    if (auto) poll();
  });

  /** Every 5 s: the line count of the data and the server's load counters; refresh the panels when they moved. */
  async function poll() {
    if (!auto || document.hidden) return;
    try {
      const [rows, status] = await Promise.all([
        S.api("/api/panels/date_range"),
        S.api("/v1/status").catch(() => null),
      ]);
      const lines = rows[0]?.lines ?? 0;
      const commits = status?.lake_commits ?? 0;
      const lag = (status?.partitions || []).reduce((s, p) => s + (p.lag || 0), 0);
      const changed = lastSeen && (lastSeen.lines !== lines || lastSeen.commits !== commits);
      const added = lastSeen ? lines - lastSeen.lines : 0;
      lastSeen = { lines, commits };
      if (changed) {
        lastChange = Date.now();
        span = rows[0];
      }
      // New data, or panels that failed last time (e.g. a query that met a commit): draw again.
      if ((changed || failures > 0) && !document.body.dataset.loading) refresh({ quiet: true, reloadSpan: false });
      const flowing = Date.now() - lastChange < 15000;
      if (!auto) return;
      setLive(
        flowing ? "flowing" : "live",
        (flowing ? "Data flowing · " : "Live · ") + fmt.int(lines) + " lines" + (flowing && added > 0 ? ` (+${fmt.int(added)})` : ""),
        `Checked ${new Date().toLocaleTimeString()} · ${fmt.int(commits)} lake commits since start · lag ${fmt.int(lag)} records`
      );
    } catch (e) {
      if (auto) setLive("error", e.status ? "API error" : "Offline", e.message);
    }
  }

  setInterval(poll, 5000);
  document.addEventListener("visibilitychange", () => !document.hidden && poll());

  // ---------- start ----------

  S.initTheme(() => chartsReady.then(redrawAll));
  syncAuto();
  syncControls();
  refresh().then(() => {
    if (auto) poll();
  });
})();
