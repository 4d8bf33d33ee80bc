// shot.mjs — development helper: screenshots a page of a running server in Debian's chromium.
// Usage: node shot.mjs URL OUT.png [WIDTHxHEIGHT] [dark] [full]
import { chromium } from "playwright-core";
const [url, out, size = "1440x900", ...flags] = process.argv.slice(2);
const [width, height] = size.split("x").map(Number);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width, height } });
page.on("pageerror", (e) => console.log("pageerror:", String(e)));
page.on("console", (m) => m.type() === "error" && console.log("console:", m.text()));
await page.addInitScript((dark) => localStorage.setItem("shopstream.theme", dark ? "dark" : "light"), flags.includes("dark"));
await page.goto(url);
await page.waitForFunction(() => document.body.dataset.loaded === "1" || document.body.dataset.runs, null, { timeout: 60000 }).catch(() => console.log("not loaded"));
await page.waitForTimeout(800);
await page.screenshot({ path: out, fullPage: flags.includes("full") });
await browser.close();
