// common.js — shared by the dashboard (app.js) and the SQL explorer (explorer.js): the API client (bearer token
// kept in localStorage, asked for with a small form on a 401), CSV downloads, number formatting, the dark mode
// toggle and a few DOM helpers. Exposes everything as `window.Shop`. No dependencies; ECharts is used only through
// `Shop.chartTheme()` / `Shop.palette()` so both pages draw charts alike.
"use strict";

(function () {
  const TOKEN_KEY = "shopstream.token";
  const THEME_KEY = "shopstream.theme";

  // ---------- DOM helpers ----------

  /** `el("div.card", {title: "x"}, child, "text")`: an element with classes, attributes and children. */
  function el(spec, attrs, ...children) {
    const [tag, ...classes] = spec.split(".");
    const node = document.createElement(tag || "div");
    if (classes.length) node.className = classes.join(" ");
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "text") node.textContent = v;
      else if (k === "html") node.innerHTML = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // ---------- formatting ----------

  const nf0 = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });
  const nf2 = new Intl.NumberFormat("en-GB", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const money2 = new Intl.NumberFormat("en-GB", { style: "currency", currency: "GBP" });
  const money0 = new Intl.NumberFormat("en-GB", { style: "currency", currency: "GBP", maximumFractionDigits: 0 });

  const fmt = {
    int: (v) => (v == null || isNaN(v) ? "–" : nf0.format(Number(v))),
    dec: (v) => (v == null || isNaN(v) ? "–" : nf2.format(Number(v))),
    money: (v) => (v == null || isNaN(v) ? "–" : money2.format(Number(v))),
    /** Money shortened for cards and axes: £8.91M, £412K, £950. */
    moneyShort(v) {
      if (v == null || isNaN(v)) return "–";
      const n = Number(v), a = Math.abs(n);
      if (a >= 1e6) return "£" + (n / 1e6).toFixed(a >= 1e8 ? 0 : 2) + "M";
      if (a >= 1e4) return "£" + (n / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "K";
      return money0.format(n);
    },
    /** Counts shortened: 541,909 → 542K (only from a million up to keep cards exact where possible). */
    intShort(v) {
      if (v == null || isNaN(v)) return "–";
      const n = Number(v);
      return Math.abs(n) >= 1e6 ? (n / 1e6).toFixed(2) + "M" : nf0.format(n);
    },
    pct: (v, digits = 1) => (v == null || isNaN(v) ? "–" : (Number(v) * 100).toFixed(digits) + "%"),
    /** Customer ids come as 17850 or 17850.0. */
    id: (v) => (v == null ? "–" : String(v).replace(/\.0$/, "")),
    date: (v) => (v == null ? "–" : String(v).slice(0, 10)),
    datetime: (v) => (v == null ? "–" : String(v).replace("T", " ").slice(0, 16)),
  };

  // ---------- token and API ----------

  const getToken = () => localStorage.getItem(TOKEN_KEY) || "";
  const setToken = (t) => (t ? localStorage.setItem(TOKEN_KEY, t) : localStorage.removeItem(TOKEN_KEY));

  let tokenPrompt = null; // one shared prompt while several requests wait for it

  /** Shows the token form; resolves once the user submitted a token. */
  function askToken(message) {
    if (tokenPrompt) return tokenPrompt;
    tokenPrompt = new Promise((resolve) => {
      const input = el("input.control", {
        type: "password",
        placeholder: "Bearer token",
        autocomplete: "current-password",
        "data-testid": "token-input",
      });
      const form = el(
        "form.modal",
        { "data-testid": "token-form" },
        el("h2", { text: "API token required" }),
        el("p", {
          text: "This server requires a bearer token for its API. It is stored in this browser (localStorage) and sent with every request.",
        }),
        message ? el("div.error", { text: message }) : null,
        input,
        el("div.actions", {}, el("button.btn.primary", { type: "submit", "data-testid": "token-submit" }, "Connect"))
      );
      const backdrop = el("div.modal-backdrop", {}, form);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        setToken(t);
        backdrop.remove();
        tokenPrompt = null;
        resolve(t);
      });
      document.body.append(backdrop);
      input.focus();
    });
    return tokenPrompt;
  }

  /** An error answered by the API: `message` is the server's `{"error": …}` text when it gave one. */
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /**
   * Calls the API: `path` relative to the site root ("/api/panels/kpis?…"). Adds the token; on a 401 asks for one
   * and retries. `as`: "json" (default), "text" or "blob". Throws ApiError on other failures.
   */
  async function api(path, { method = "GET", body, as = "json", signal } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      const token = getToken();
      if (token) headers.Authorization = "Bearer " + token;
      if (body != null) headers["Content-Type"] = "text/plain; charset=utf-8";
      const res = await fetch(path, { method, body, headers, signal, cache: "no-store" });
      if (res.status === 401 && attempt < 5) {
        await askToken(token ? "That token was refused; try again." : "");
        continue;
      }
      if (!res.ok) {
        let message = res.status + " " + res.statusText;
        try {
          const text = await res.text();
          try {
            message = JSON.parse(text).error || text || message;
          } catch {
            message = text || message;
          }
        } catch {
          /* keep the status line */
        }
        throw new ApiError(res.status, message.trim());
      }
      if (as === "blob") return res.blob();
      if (as === "text") return res.text();
      return res.json();
    }
  }

  /** Builds "?a=1&b=2" from an object, leaving out empty values. */
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  /** Saves a Blob as a file through a temporary link (works with the token, unlike a plain href). */
  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename, style: "display:none" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  /** Downloads `path` (an API URL answering CSV) as `filename`. */
  async function downloadCsv(path, filename, options) {
    const blob = await api(path, { ...options, as: "blob" });
    saveBlob(new Blob([blob], { type: "text/csv" }), filename);
  }

  // ---------- theme ----------

  const isDark = () => document.body.classList.contains("dark");

  function applyTheme(dark) {
    document.body.classList.toggle("dark", dark);
    document.documentElement.dataset.theme = dark ? "dark" : "light";
    const btn = $("[data-testid=dark-toggle]");
    if (btn) {
      btn.setAttribute("aria-pressed", String(dark));
      btn.querySelector(".label").textContent = dark ? "Light" : "Dark";
    }
  }

  /** Initial theme: the remembered choice, else the system's. */
  function initTheme(onChange) {
    const saved = localStorage.getItem(THEME_KEY);
    const dark = saved ? saved === "dark" : window.matchMedia?.("(prefers-color-scheme: dark)").matches;
    applyTheme(!!dark);
    const btn = $("[data-testid=dark-toggle]");
    if (btn)
      btn.addEventListener("click", () => {
        const next = !isDark();
        localStorage.setItem(THEME_KEY, next ? "dark" : "light");
        applyTheme(next);
        if (onChange) onChange(next);
      });
  }

  /** The ECharts theme name for the current mode. */
  const chartTheme = () => (isDark() ? "dark" : null);

  /** Series colours, the same in both modes (readable on either background). */
  const palette = () =>
    isDark()
      ? ["#7b93ff", "#3ccf7e", "#f7b955", "#ff7a8a", "#5ad1e6", "#b08cff", "#ff9f5a", "#9bd36b"]
      : ["#4f6bed", "#12a150", "#f79009", "#e04f5f", "#13a8c4", "#8e5cf0", "#f0702b", "#6aa84f"];

  /** Colours for chart text and grid lines that follow the CSS variables. */
  function chartInk() {
    const css = getComputedStyle(document.body);
    const v = (n) => css.getPropertyValue(n).trim();
    return { text: v("--text"), muted: v("--muted"), faint: v("--faint"), border: v("--border"), card: v("--card") };
  }

  window.Shop = {
    el, $, $$, fmt, api, query, ApiError, askToken, getToken, setToken,
    saveBlob, downloadCsv, initTheme, isDark, chartTheme, palette, chartInk,
  };
})();
