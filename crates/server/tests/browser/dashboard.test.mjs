// dashboard.test.mjs — drives the shopstream dashboard and SQL explorer in Debian's chromium (through playwright-core,
// no bundled browser) against a running server with the UCI Online Retail data loaded, and checks what the page
// shows against answers of /api/sql. Plain node script: prints one line per check, then "N passed, N failed", and
// exits 1 when a check failed.
//
//   SHOPSTREAM_URL=http://127.0.0.1:8090 SCREENSHOT_DIR=/tmp/shots node dashboard.test.mjs
//
// Optional: SHOPSTREAM_TOKEN (the server's bearer token: the test then also goes through the token form),
// CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const BASE = (process.env.SHOPSTREAM_URL || "").replace(/\/+$/, "");
if (!BASE) {
  console.error("set SHOPSTREAM_URL to the base URL of a running shopstream server (e.g. http://127.0.0.1:8090)");
  process.exit(2);
}
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || "screenshots");
const TOKEN = process.env.SHOPSTREAM_TOKEN || "";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
fs.mkdirSync(SHOTS, { recursive: true });

let passed = 0, failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? " — " + detail : ""}`);
  return ok;
}
const close = (a, b, tol = 0.011) => Math.abs(Number(a) - Number(b)) <= tol;

/** Runs SQL through the server's API (from node, not the page). */
async function sql(q) {
  const res = await fetch(BASE + "/api/sql?q=" + encodeURIComponent(q), {
    headers: TOKEN ? { Authorization: "Bearer " + TOKEN } : {},
  });
  if (!res.ok) throw new Error(`/api/sql ${res.status}: ${await res.text()}`);
  return res.json();
}
const scalar = async (q) => Object.values((await sql(q))[0])[0];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
// Console errors count, except the browser's own line for an HTTP error status (the explorer's bad query is one).
page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && pageErrors.push("console: " + m.text()));

const loadedAt = () => page.evaluate(() => document.body.dataset.loadedAt || "");
/** Runs `action`, then waits for the dashboard to finish the refresh it started. */
async function andReload(action) {
  const before = await loadedAt();
  await action();
  await page.waitForFunction((b) => document.body.dataset.loadedAt !== b && !document.body.dataset.loading, before, { timeout: 60000 });
}
/** Screenshot from the top of the page (a full-page shot of a scrolled page repeats the sticky header). */
async function shot(name, fullPage = true) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, name), fullPage });
}
const kpi = (m) => page.getAttribute(`[data-testid=kpi-${m}]`, "data-value");

try {
  // ---------- first load (and the token form when the server wants one) ----------
  await page.goto(BASE + "/");
  if (TOKEN) {
    await page.waitForSelector("[data-testid=token-form]", { timeout: 30000 });
    check("token form shown when the API answers 401", true);
    await page.fill("[data-testid=token-input]", TOKEN);
    await page.click("[data-testid=token-submit]");
  }
  await page.waitForSelector("body[data-loaded='1']", { timeout: 90000 });
  const timing = await page.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, Math.round(e.startTime)]));
    const nav = performance.getEntriesByType("navigation")[0];
    return {
      firstPaint: paint["first-paint"],
      firstContentfulPaint: paint["first-contentful-paint"],
      domContentLoaded: Math.round(nav.domContentLoadedEventEnd),
      allPanelsLoaded: Number(document.body.dataset.loadedMs),
    };
  });
  console.log(
    `timing: first paint ${timing.firstPaint} ms, first contentful paint ${timing.firstContentfulPaint} ms, ` +
      `DOMContentLoaded ${timing.domContentLoaded} ms, all panels loaded ${timing.allPanelsLoaded} ms`
  );
  check("first contentful paint recorded", timing.firstContentfulPaint > 0, `${timing.firstContentfulPaint} ms`);
  for (const m of ["revenue", "orders", "average_order_value", "units", "customers", "repeat_customer_rate", "cancellation_rate"]) {
    const v = await kpi(m);
    check(`KPI card ${m} has a numeric data-value`, v !== null && v !== "" && !isNaN(Number(v)), v);
  }
  await page.waitForSelector("[data-testid=live][data-state=live], [data-testid=live][data-state=flowing]", { timeout: 20000 })
    .then(() => check("auto-refresh polls the server (live indicator)", true), (e) => check("auto-refresh polls the server (live indicator)", false, e.message));
  check("revenue chart drawn", (await page.locator("#chart-revenue canvas").count()) > 0);
  await page.waitForTimeout(800); // chart animations
  await shot("dashboard-default.png"); // the default view: last 90 days, changes against the 90 days before
  check("world map drawn", (await page.locator("#chart-map canvas").count()) > 0);

  // ---------- preset "all", then France through the country filter ----------
  await andReload(() => page.selectOption("[data-testid=date-preset]", "all"));
  const countryRowsAll = await page.locator("[data-testid=country-row]").count();
  const countriesSql = await scalar("SELECT COUNT(DISTINCT country) AS n FROM orders WHERE NOT is_cancellation");
  check("countries table lists every country", countryRowsAll === Number(countriesSql), `${countryRowsAll} rows, SQL ${countriesSql}`);
  const allRevenue = await kpi("revenue");
  const allRevenueSql = await scalar("SELECT ROUND(SUM(line_revenue),2) AS r FROM orders WHERE NOT is_cancellation");
  check("revenue KPI (all data) equals SQL", close(allRevenue, allRevenueSql), `${allRevenue} vs ${allRevenueSql}`);

  await andReload(() => page.selectOption("[data-testid=country-filter]", "France"));
  const frRevenue = await kpi("revenue");
  const frRevenueSql = await scalar("SELECT ROUND(SUM(line_revenue),2) AS r FROM orders WHERE country='France' AND NOT is_cancellation");
  check("revenue KPI for France equals SQL", close(frRevenue, frRevenueSql), `${frRevenue} vs ${frRevenueSql}`);
  const frOrders = await kpi("orders");
  const frOrdersSql = await scalar("SELECT COUNT(DISTINCT invoice_no) AS n FROM orders WHERE country='France' AND NOT is_cancellation");
  check("orders KPI for France equals SQL", Number(frOrders) === Number(frOrdersSql), `${frOrders} vs ${frOrdersSql}`);
  check("France row highlighted", (await page.locator("[data-testid=country-row][data-country='France'].selected").count()) === 1);
  check("filter kept in the URL", (await page.evaluate(() => location.hash)).includes("country=France"));
  await shot("dashboard-light.png");

  // ---------- click a country row: filter + drill to its customers, then a customer's invoices ----------
  await andReload(() => page.click("[data-testid=country-row][data-country='Germany']"));
  check("clicking a country row sets the country filter", (await page.inputValue("[data-testid=country-filter]")) === "Germany");
  const deRevenue = await kpi("revenue");
  const deRevenueSql = await scalar("SELECT ROUND(SUM(line_revenue),2) AS r FROM orders WHERE country='Germany' AND NOT is_cancellation");
  check("revenue KPI follows the click (Germany)", close(deRevenue, deRevenueSql), `${deRevenue} vs ${deRevenueSql}`);
  await page.waitForSelector("[data-testid=drill][data-level=customers][data-ready='1']", { timeout: 60000 });
  const drillCustomers = await page.locator("[data-testid=drill] [data-testid=drill-row]").count();
  const deCustomersSql = await scalar(
    "SELECT COUNT(DISTINCT customer_id) AS n FROM orders WHERE country='Germany' AND NOT is_cancellation AND customer_id IS NOT NULL"
  );
  check("drill: country's customers listed", drillCustomers === Math.min(50, Number(deCustomersSql)), `${drillCustomers} rows, SQL ${deCustomersSql} (cap 50)`);

  const firstCustomer = page.locator("[data-testid=drill] [data-testid=drill-row]").first();
  const customerId = await firstCustomer.getAttribute("data-customer");
  await firstCustomer.click();
  await page.waitForSelector("[data-testid=drill][data-level=invoices][data-ready='1']", { timeout: 60000 });
  const invoiceRows = await page.locator("[data-testid=drill] [data-testid=drill-row]").count();
  const invoicesSql = await scalar(`SELECT COUNT(DISTINCT invoice_no) AS n FROM orders WHERE customer_id = ${Number(customerId)}`);
  check(`drill: invoices of customer ${customerId} equal SQL`, invoiceRows === Math.min(100, Number(invoicesSql)), `${invoiceRows} rows, SQL ${invoicesSql} (cap 100)`);
  await page.screenshot({ path: path.join(SHOTS, "dashboard-drill.png") });

  const firstInvoice = page.locator("[data-testid=drill] [data-testid=drill-row]").first();
  const invoiceNo = await firstInvoice.getAttribute("data-invoice");
  await firstInvoice.click();
  await page.waitForSelector("[data-testid=drill][data-level=lines][data-ready='1']", { timeout: 60000 });
  const lineRows = await page.locator("[data-testid=drill] [data-testid=drill-row]").count();
  const linesSql = await scalar(`SELECT COUNT(*) AS n FROM orders WHERE invoice_no = '${invoiceNo.replace(/'/g, "''")}'`);
  check(`drill: lines of invoice ${invoiceNo} equal SQL`, lineRows === Number(linesSql), `${lineRows} rows, SQL ${linesSql}`);
  await page.keyboard.press("Escape");
  check("drill closes with Escape", await page.locator("[data-testid=drill]").isHidden());

  // Top customers table → invoices directly.
  const topCustomer = page.locator("[data-testid=customer-row]").first();
  const topId = await topCustomer.getAttribute("data-customer");
  await topCustomer.click();
  await page.waitForSelector("[data-testid=drill][data-level=invoices][data-ready='1']", { timeout: 60000 });
  check("top customers row opens that customer's invoices", (await page.textContent("#drill-title")).includes(topId), topId);
  await page.click("[data-testid=drill-close]");

  // ---------- CSV export ----------
  async function download(testid) {
    const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 60000 }), page.click(`[data-testid=${testid}]`)]);
    const file = path.join(SHOTS, dl.suggestedFilename());
    await dl.saveAs(file);
    return fs.readFileSync(file, "utf8").trim().split(/\r?\n/);
  }
  const countriesCsv = await download("export-countries");
  check("countries CSV header", countriesCsv[0] === "country,revenue,orders,customers", countriesCsv[0]);
  check("countries CSV has a row per country", countriesCsv.length - 1 === Number(countriesSql), `${countriesCsv.length - 1} rows`);
  const customersCsv = await download("export-top_customers");
  check("top customers CSV header", customersCsv[0] === "customer_id,country,revenue,orders", customersCsv[0]);
  check(
    "top customers CSV: 10 rows, all Germany (current filter)",
    customersCsv.length - 1 === 10 && customersCsv.slice(1).every((l) => l.split(",")[1] === "Germany"),
    `${customersCsv.length - 1} rows`
  );

  // ---------- dark mode ----------
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const lightBg = await bg();
  await page.click("[data-testid=dark-toggle]");
  await page.waitForTimeout(1200); // charts redraw and animate
  check("dark mode sets body.dark", await page.evaluate(() => document.body.classList.contains("dark") && document.documentElement.dataset.theme === "dark"));
  const darkBg = await bg();
  check("dark mode changes the background", darkBg !== lightBg, `${lightBg} → ${darkBg}`);
  await shot("dashboard-dark.png");
  await page.reload();
  await page.waitForSelector("body[data-loaded='1']", { timeout: 90000 });
  check("dark mode remembered after reload", await page.evaluate(() => document.body.classList.contains("dark")));
  await page.click("[data-testid=dark-toggle]");
  check("dark mode toggles back", !(await page.evaluate(() => document.body.classList.contains("dark"))));

  // ---------- Live section (continuous views over the change streams) ----------
  if (process.env.LIVE_VIEWS) {
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=live-section]").dataset.updates) > 0, null, { timeout: 60000 });
    check("live section receives view updates", true);
    // The hopping view's first step puts every line in 60 windows: give it time.
    await page.waitForSelector("[data-testid=live-product]", { timeout: 120000 }).catch(() => {});
    const products = await page.locator("[data-testid=live-product]").count();
    check("live top products listed", products > 0, `${products} rows`);
    check("live active customers shown", /\d/.test(await page.textContent("[data-testid=live-customers]")));
    // An order acknowledged now shows on the per-minute chart: its minute becomes the chart's latest.
    const minute = "2011-12-31 10:07:00";
    const sent = Date.now();
    const res = await fetch(BASE + "/v1/topics/orders/records", {
      method: "POST",
      headers: { "Content-Type": "application/x-ndjson", ...(TOKEN ? { Authorization: "Bearer " + TOKEN } : {}) },
      body: JSON.stringify({ InvoiceNo: "LIVE-1", StockCode: "85123A", Description: "LIVE HEART", Quantity: 3,
        InvoiceDate: minute, UnitPrice: "2.55", CustomerID: "17850", Country: "United Kingdom" }) + "\n",
    });
    check("live order acknowledged", res.ok, String(res.status));
    await page.waitForFunction((m) => document.querySelector("[data-testid=live-section]").dataset.lastMinute === m,
      minute.replace(" ", "T"), { timeout: 30000 });
    check("live chart shows the new order's minute", true, `after ${Date.now() - sent} ms`);
    await shot("dashboard-live.png");
  }

  // ---------- layouts ----------
  for (const [w, h] of [[1366, 768], [1920, 1080]]) {
    await page.setViewportSize({ width: w, height: h });
    await page.goto("about:blank");
    await page.goto(BASE + "/#preset=all");
    await page.waitForSelector("body[data-loaded='1']", { timeout: 90000 });
    await page.waitForTimeout(500);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(`no horizontal overflow at ${w}×${h}`, overflow <= 0, `${overflow}px`);
    await shot(`dashboard-${w}x${h}.png`, false);
  }

  // ---------- SQL explorer ----------
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.click("[data-testid=nav-explorer]");
  await page.waitForURL(/\/explorer$/);
  await page.waitForSelector("body[data-runs]", { timeout: 60000 }); // the remembered statement runs on load
  const runs = () => page.evaluate(() => document.body.dataset.runs || "");
  async function runSql(q) {
    const before = await runs();
    await page.fill("[data-testid=sql-input]", q);
    await page.press("[data-testid=sql-input]", "Control+Enter");
    await page.waitForFunction((b) => document.body.dataset.runs !== b, before, { timeout: 60000 });
  }
  // The sidebar lists what the catalog has: the built-in tables first, then every dataset.
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=tables] li").length > 0, null, { timeout: 60000 });
  const listed = await page.locator("[data-testid=tables] li button").allTextContents();
  const catalog = (await sql("SELECT DISTINCT table_name FROM information_schema.tables WHERE table_schema = 'public'")).map((r) => r.table_name);
  check("explorer lists every table of the catalog, built-in ones first",
    listed.slice(0, 4).join(",") === "orders,raw_orders,dead_letters,loads" && listed.length === catalog.length && catalog.every((t) => listed.includes(t)),
    listed.join(", "));
  await runSql("SELECT nonsense FROM nowhere");
  check("explorer shows the error", (await page.isVisible("[data-testid=sql-error]")) && (await page.textContent("[data-testid=sql-error]")).length > 0,
    (await page.textContent("[data-testid=sql-error]")).slice(0, 80));
  const q = "SELECT country, COUNT(DISTINCT invoice_no) AS orders, ROUND(SUM(line_revenue), 2) AS revenue FROM orders " +
    "WHERE NOT is_cancellation GROUP BY country ORDER BY revenue DESC LIMIT 8";
  await runSql(q);
  const expected = await sql(q);
  const rows = await page.locator("[data-testid=result-row]").allTextContents();
  check("explorer table has the query's rows", rows.length === expected.length, `${rows.length} vs ${expected.length}`);
  const firstCells = await page.locator("[data-testid=result-row] td:first-child").allTextContents();
  check("explorer rows match SQL", firstCells.join("|") === expected.map((r) => r.country).join("|"), firstCells.slice(0, 3).join(", "));
  check("explorer chart drawn", await page.isVisible("[data-testid=result-chart] canvas"));
  await page.selectOption("[data-testid=chart-type]", "line");
  check("explorer line chart drawn", await page.isVisible("[data-testid=result-chart] canvas"));
  await page.selectOption("[data-testid=chart-type]", "bar");
  const explorerCsv = await download("export-csv");
  check("explorer CSV export", explorerCsv[0] === "country,orders,revenue" && explorerCsv.length - 1 === expected.length, `${explorerCsv[0]}, ${explorerCsv.length - 1} rows`);
  await page.waitForTimeout(800); // chart animation
  await shot("explorer.png");

  check("no JavaScript errors on the pages", pageErrors.length === 0, pageErrors.slice(0, 3).join(" | "));
} catch (e) {
  check("test ran to the end", false, e.stack || String(e));
  await page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}

console.log(`screenshots in ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
