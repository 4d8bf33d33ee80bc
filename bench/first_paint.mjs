// first_paint.mjs — loads the dashboard in Debian's chromium (playwright-core from the browser test's
// node_modules) LOADS times, each in a fresh browser context (no cache), and prints the first contentful paint
// and the time until every panel has its data (the page sets body[data-loaded] and data-loaded-ms).
//
//   node bench/first_paint.mjs http://127.0.0.1:8080
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../crates/server/tests/browser/package.json"));
const { chromium } = require("playwright-core");

const url = process.argv[2];
const loads = Number(process.env.LOADS || 5);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
const fcp = [], all = [];
try {
  for (let i = 0; i < loads; i++) {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    await page.goto(url + "/");
    await page.waitForSelector("body[data-loaded='1']", { timeout: 120000 });
    const t = await page.evaluate(() => ({
      fcp: performance.getEntriesByType("paint").find((e) => e.name === "first-contentful-paint")?.startTime,
      all: Number(document.body.dataset.loadedMs),
    }));
    fcp.push(t.fcp);
    all.push(t.all);
    await context.close();
  }
} finally {
  await browser.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`first contentful paint: median ${median(fcp).toFixed(0)} ms, max ${Math.max(...fcp).toFixed(0)} ms; ` +
  `all panels loaded: median ${median(all).toFixed(0)} ms, max ${Math.max(...all).toFixed(0)} ms (${loads} loads)`);
