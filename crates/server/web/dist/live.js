// live.js — the dashboard's Live section: the continuous views' change streams (GET /api/views/{name}/stream,
// Server-Sent Events read with fetch so the bearer token goes along; EventSource cannot send it). Revenue and
// orders per minute for the last hour (view revenue_per_minute), the top products of the last hour (hopping
// view top_products_hour), the customers active in the last hour and the average order value
// (active_customers_hour). A view that does not exist leaves its part showing "no view".
//
// For tests: section[data-testid=live-section] has data-updates (updates received) and data-last-minute (the
// latest minute on the chart); each view's state is in data-<view>="waiting|live|none".
"use strict";

(function () {
  const S = window.Shop;
  const { el, $, fmt } = S;
  const section = $("#live");
  if (!section) return;

  /** (window_start, country) → {revenue, orders}, for the last hour of minutes. */
  const minutes = new Map();
  let updates = 0;

  /** Reads one view's stream, calling onUpdate with each update; reconnects after a failure. */
  async function follow(view, onUpdate) {
    for (;;) {
      try {
        const headers = {};
        const token = S.getToken();
        if (token) headers.Authorization = "Bearer " + token;
        const res = await fetch("/api/views/" + view + "/stream", { headers, cache: "no-store" });
        if (res.status === 401) {
          await S.askToken("");
          continue;
        }
        if (res.status === 404) {
          section.dataset[view.replace(/_(\w)/g, (_, c) => c.toUpperCase())] = "none";
          return;
        }
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
            if (!data) continue;
            const update = JSON.parse(data);
            if (!update.view) continue;
            section.dataset[view.replace(/_(\w)/g, (_, c) => c.toUpperCase())] = "live";
            onUpdate(update);
            section.dataset.updates = String(++updates);
          }
        }
      } catch (e) {
        console.warn("live view " + view + ": " + e);
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // ---------- revenue and orders per minute ----------

  let chart = null;
  function perMinute(update) {
    for (const r of [...(update.final || []), ...(update.live || [])]) {
      minutes.set(r.window_start + "|" + (r.country ?? ""), { start: r.window_start, revenue: Number(r.revenue), orders: Number(r.orders) });
    }
    const byMinute = new Map();
    for (const v of minutes.values()) {
      const m = byMinute.get(v.start) || { revenue: 0, orders: 0 };
      m.revenue += v.revenue;
      m.orders += v.orders;
      byMinute.set(v.start, m);
    }
    const keys = [...byMinute.keys()].sort();
    if (!keys.length) return;
    const last = keys[keys.length - 1];
    const hourAgo = new Date(Date.parse(last + "Z") - 3600 * 1000).toISOString().slice(0, 19);
    for (const [k, v] of minutes) if (v.start < hourAgo) minutes.delete(k);
    const shown = keys.filter((k) => k >= hourAgo);
    section.dataset.lastMinute = last;
    const revenue = shown.map((k) => byMinute.get(k).revenue);
    const orders = shown.map((k) => byMinute.get(k).orders);
    const hourRevenue = revenue.reduce((a, b) => a + b, 0);
    const hourOrders = orders.reduce((a, b) => a + b, 0);
    $("#live-aov").textContent = hourOrders ? fmt.money(hourRevenue / hourOrders) : "–";
    $("#live-revenue").textContent = fmt.money(hourRevenue);
    if (!window.echarts) return;
    chart = chart || window.echarts.init($("#chart-live"));
    const ink = S.chartInk();
    chart.setOption({
      animation: false,
      grid: { left: 56, right: 48, top: 28, bottom: 28 },
      tooltip: { trigger: "axis" },
      legend: { data: ["Revenue", "Orders"], textStyle: { color: ink.muted }, top: 0 },
      xAxis: { type: "category", data: shown.map((k) => k.slice(11, 16)), axisLabel: { color: ink.muted } },
      yAxis: [
        { type: "value", axisLabel: { color: ink.muted }, splitLine: { lineStyle: { color: ink.border } } },
        { type: "value", axisLabel: { color: ink.muted }, splitLine: { show: false } },
      ],
      series: [
        { name: "Revenue", type: "bar", data: revenue, itemStyle: { color: S.palette()[0] } },
        { name: "Orders", type: "line", yAxisIndex: 1, data: orders, itemStyle: { color: S.palette()[1] } },
      ],
    });
  }

  // ---------- the last hour (hopping windows: the newest one) ----------

  const newest = (rows) => {
    const end = rows.reduce((m, r) => (r.window_end > m ? r.window_end : m), "");
    return rows.filter((r) => r.window_end === end);
  };

  function topProducts(update) {
    const rows = newest(update.live || []).sort((a, b) => Number(b.revenue) - Number(a.revenue)).slice(0, 10);
    const body = $("#live-products");
    body.replaceChildren(
      ...rows.map((r) =>
        el("tr", { "data-testid": "live-product" }, el("td", { text: r.stock_code }), el("td", { text: r.description || "" }),
          el("td.num", { text: fmt.int(Number(r.quantity)) }), el("td.num", { text: fmt.money(Number(r.revenue)) }))
      )
    );
  }

  function activeCustomers(update) {
    const [row] = newest(update.live || []);
    $("#live-customers").textContent = row ? fmt.int(Number(row.customers)) : "–";
  }

  follow("revenue_per_minute", perMinute);
  follow("top_products_hour", topProducts);
  follow("active_customers_hour", activeCustomers);
  window.addEventListener("resize", () => chart && chart.resize());
})();
