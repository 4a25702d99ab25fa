// Direct page loads in Chromium, for `cargo xtask bench --http-users`.
//
// Usage: node end2end/bench/page-loads.mjs BASE_URL EMAIL PASSWORD TIMES PATH...
//
// Chromium runs with a profile of its own on disk, as a user's browser
// does: it keeps the HTTP cache and the code it compiled (scripts and
// wasm) between tabs. (Playwright's usual context is a private window,
// which keeps no compiled code: measured separately, below.) Signs in
// once, opens every path once and leaves it open 3 s, as a user reading
// it (the browser writes its code cache once the page's optimised code
// has settled, 2 s after the last of it), then opens each path TIMES
// times in a fresh tab, as a link opened in a new tab does (a returning
// user's); then TIMES times each by its address in one open tab, as a
// reload or a bookmark does (`same_tab`). A load is timed from the
// navigation's start to the page being hydrated (`body[data-hydrated]`,
// set once the wasm has taken over): what a user waits for before the
// page answers a click. Prints one JSON object: each path's median and
// worst in new tabs, the median of all new-tab loads, and the same-tab
// loads' median and worst. Then, for comparison, the same new-tab loads
// in a private window (`private_window`: a fresh context, HTTP cache
// only, after one unmeasured load), and the browser's own share
// (`floor`): each page's HTML as the server rendered it, with its scripts
// and module preloads taken out, served from a server of this script's
// (with the style sheet and icon, under the same cache headers) and
// opened TIMES times in new tabs, timed to DOMContentLoaded: what a new
// tab costs before any of the app's wasm or JavaScript runs.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "@playwright/test";

const [base, email, password, timesText, ...paths] = process.argv.slice(2);
const times = Number(timesText);
if (!base || !email || !password || !(times > 0) || paths.length === 0) {
  console.error("usage: page-loads.mjs BASE_URL EMAIL PASSWORD TIMES PATH...");
  process.exit(2);
}

const launch = {
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
};
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "page-loads-"));
const context = await chromium.launchPersistentContext(profile, { ...launch, baseURL: base });
// Notes the moment the app marks the page hydrated, in the page's own
// clock (milliseconds since the navigation started), and says so on the
// console.
const HYDRATED = "page-loads: hydrated";
const noteHydration = (context) =>
  context.addInitScript((message) => {
    new MutationObserver((_, observer) => {
      if (document.body?.hasAttribute("data-hydrated")) {
        window.__hydratedAt = performance.now();
        observer.disconnect();
        console.log(message);
      }
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-hydrated"] });
  }, HYDRATED);
await noteHydration(context);
// Opens `path` in `page` and waits until it is hydrated.
const load = async (page, path) => {
  const hydrated = page.waitForEvent("console", { predicate: (m) => m.text() === HYDRATED, timeout: 30_000 });
  await page.goto(path, { waitUntil: "commit" });
  await hydrated;
};
const signIn = await context.request.post("/api/sign_in", { form: { email, password } });
if (!signIn.ok()) {
  console.error(`sign-in failed: ${signIn.status()} ${await signIn.text()}`);
  process.exit(1);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const round = (x) => Math.round(x * 10) / 10;

// Every screen once first, unmeasured, each left open a while as a user
// reading it: a returning user's browser, with the bundle and its
// compiled code in its caches.
for (const path of paths) {
  const warm = await context.newPage();
  await load(warm, path);
  await warm.waitForTimeout(3_000);
  await warm.close();
}
// Opens `path` in a new tab of `context`; its times to hydrated and to
// the end of the load event (which may come after hydration).
const newTab = async (context, path) => {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${path}: ${e.message}`));
  await load(page, path);
  const times = await page.evaluate(async () => {
    const hydrated = window.__hydratedAt ?? performance.now();
    if (document.readyState !== "complete") {
      await new Promise((done) => window.addEventListener("load", done, { once: true }));
    }
    return [hydrated, performance.getEntriesByType("navigation")[0]?.loadEventEnd ?? 0];
  });
  await page.close();
  return times;
};

const all = [];
// The browser's load event, for comparison (the page may not answer yet).
const loads = [];
const byPath = {};
const errors = [];
for (const path of paths) {
  const ms = [];
  for (let i = 0; i < times; i++) {
    const [hydratedAt, loadedAt] = await newTab(context, path);
    ms.push(hydratedAt);
    all.push(hydratedAt);
    loads.push(loadedAt);
  }
  byPath[path] = { median_ms: round(median(ms)), max_ms: round(Math.max(...ms)) };
}

// The same pages opened by their address in a tab that is already open
// (a reload, a bookmark or a typed address): no new renderer to start.
const sameTab = [];
const tab = await context.newPage();
tab.on("pageerror", (e) => errors.push(`${tab.url()} (same tab): ${e.message}`));
for (const path of paths) {
  for (let i = 0; i < times; i++) {
    await load(tab, path);
    sameTab.push(await tab.evaluate(() => window.__hydratedAt ?? performance.now()));
  }
}

// The same new-tab loads in a private window: a fresh context of
// another browser, which keeps the HTTP cache but no compiled code.
const privateBrowser = await chromium.launch(launch);
const privateWindow = await privateBrowser.newContext({ baseURL: base });
await noteHydration(privateWindow);
await privateWindow.request.post("/api/sign_in", { form: { email, password } });
await newTab(privateWindow, paths[0]);
const privateLoads = [];
for (const path of paths) {
  for (let i = 0; i < times; i++) privateLoads.push((await newTab(privateWindow, path))[0]);
}
await privateBrowser.close();

// The floor: the same documents without the app's scripts.
const MARK = '<script>addEventListener("DOMContentLoaded", () => document.body.setAttribute("data-hydrated", ""));</script>';
const documents = new Map();
for (const path of paths) {
  const html = await (await context.request.get(path)).text();
  documents.set(
    new URL(path, base).pathname,
    html
      .replace(/<script\b[^>]*>[\s\S]*?<\/script>/g, "")
      .replace(/<link\b[^>]*rel="(?:modulepreload|preload)"[^>]*>/g, "")
      .replace("</body>", `${MARK}</body>`),
  );
}
// Anything else (the style sheet, the icon) comes from the app's server,
// fetched once, with its own type and cache headers.
const assets = new Map();
const copy = http.createServer(async (req, res) => {
  const path = new URL(req.url, base).pathname;
  if (documents.has(path)) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" });
    res.end(documents.get(path));
    return;
  }
  if (!assets.has(path)) {
    const r = await context.request.get(path);
    const h = r.headers();
    assets.set(path, { status: r.status(), body: await r.body(), headers: { "content-type": h["content-type"] ?? "application/octet-stream", "cache-control": h["cache-control"] ?? "no-cache" } });
  }
  const a = assets.get(path);
  res.writeHead(a.status, a.headers);
  res.end(a.body);
});
await new Promise((up) => copy.listen(0, "127.0.0.1", up));
const copyBase = `http://127.0.0.1:${copy.address().port}`;
const floor = [];
for (const path of paths) {
  const warmCopy = await context.newPage();
  await load(warmCopy, copyBase + path);
  await warmCopy.close();
  for (let i = 0; i < times; i++) {
    const page = await context.newPage();
    await load(page, copyBase + path);
    floor.push(await page.evaluate(() => window.__hydratedAt ?? performance.now()));
    await page.close();
  }
}
copy.close();
await context.close();
fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
console.log(
  JSON.stringify({
    loads: all.length,
    median_ms: round(median(all)),
    max_ms: round(Math.max(...all)),
    load_event_median_ms: round(median(loads)),
    paths: byPath,
    same_tab: { loads: sameTab.length, median_ms: round(median(sameTab)), max_ms: round(Math.max(...sameTab)) },
    private_window: { loads: privateLoads.length, median_ms: round(median(privateLoads)), max_ms: round(Math.max(...privateLoads)) },
    floor: { loads: floor.length, median_ms: round(median(floor)), max_ms: round(Math.max(...floor)) },
    errors,
  }),
);
