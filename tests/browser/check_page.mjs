#!/usr/bin/env node
// Checks vmlb's live web page in a real headless browser: Debian's chromium, driven by
// playwright-core (which never downloads a browser of its own).
//
//   node tests/browser/check_page.mjs URL SCREENSHOT.png [options]
//
//   --hosts a,b,c     host names that must get a card (default: any one host)
//   --observe-s S     watch at least S seconds between the two readings (default 4)
//   --timeout-s S     how long the cards may take to appear, and the page to move once
//                     watched (default 45)
//   --width W         viewport width in CSS pixels (default 1400; the screenshot is full-page)
//   --scale F         device scale factor of the screenshot (default 1)
//   --chromium PATH   the browser (default $CHROMIUM or /usr/bin/chromium)
//
// It opens the page, waits for the host cards, reads what the page shows (header, job types
// table, each card's badge, numbers, bar, VM rows and where its chart line is drawn), watches
// until every chart drew on and the numbers moved, reads again, takes a full-page screenshot,
// and prints one JSON object. Exit status 0 only if: every expected host
// has a card, every chart drew new points, some number on the page changed, and the page logged
// no error (console, uncaught exception, failed request, or its own "worker unreachable").
// Otherwise 1, with the reasons in "failures" and on stderr; 2 for bad arguments.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function usage(message) {
  process.stderr.write(`check_page: ${message}\nusage: node check_page.mjs URL SCREENSHOT.png [--hosts a,b] [--observe-s S] [--timeout-s S] [--width W] [--scale F] [--chromium PATH]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    hosts: [], observeS: 4, timeoutS: 45, width: 1400, scale: 1,
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
  };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) { positional.push(arg); continue; }
    const value = argv[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    const number = () => { const n = Number(value); if (!(n > 0)) usage(`${arg}: not a positive number: ${value}`); return n; };
    if (arg === "--hosts") options.hosts = value.split(",").filter(Boolean);
    else if (arg === "--observe-s") options.observeS = number();
    else if (arg === "--timeout-s") options.timeoutS = number();
    else if (arg === "--width") options.width = number();
    else if (arg === "--scale") options.scale = number();
    else if (arg === "--chromium") options.chromium = value;
    else usage(`unknown option ${arg}`);
  }
  if (positional.length !== 2) usage("needs URL and SCREENSHOT");
  [options.url, options.screenshot] = positional;
  return options;
}

// Runs in the page: everything it shows, as data.
function readPage() {
  const text = id => (document.getElementById(id)?.textContent ?? "").trim();
  // Where the chart's I/O line (#1c7ed6) is drawn, in canvas pixels, and a digest of the canvas.
  function chartOf(canvas) {
    const { width, height } = canvas;
    const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    let leftmost = width, rightmost = -1, painted = 0, digest = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
      digest = (digest * 31 + r + 3 * g + 7 * b + 11 * a) % 1000000007;
      if (a > 200 && Math.abs(r - 0x1c) < 40 && Math.abs(g - 0x7e) < 40 && Math.abs(b - 0xd6) < 40) {
        painted++;
        leftmost = Math.min(leftmost, (i / 4) % width);
        rightmost = Math.max(rightmost, (i / 4) % width);
      }
    }
    const span = rightmost < 0 ? 0 : rightmost - leftmost + 1;
    return { width, height, line_left_px: rightmost < 0 ? -1 : leftmost, line_right_px: rightmost, line_span_px: span, line_px: painted, digest };
  }
  return {
    header: {
      policy: text("policy"), hosts: text("hosts"), dispatched: text("dispatched"),
      rate: text("rate"), waiting: text("waiting"), dead_letters: text("dead"), error: text("error"),
    },
    job_types: [...document.querySelectorAll("#job-types tbody tr")].map(row =>
      [...row.querySelectorAll("td")].map(cell => cell.textContent)),
    hosts: [...document.querySelectorAll("#fleet .host")].map(card => ({
      name: card.querySelector(".name")?.textContent ?? "",
      badge: card.querySelector(".badge")?.textContent ?? "",
      eligible: card.querySelector(".badge")?.classList.contains("ok") ?? false,
      numbers: card.querySelector(".numbers")?.textContent ?? "",
      bar_fill: card.querySelector(".bar .fill")?.style.width ?? "",
      bar_limit: card.querySelector(".bar .limit")?.style.left ?? "",
      vms: [...card.querySelectorAll("tbody tr")].map(row =>
        [...row.querySelectorAll("td")].map(cell => cell.textContent)),
      chart: card.querySelector("canvas") ? chartOf(card.querySelector("canvas")) : null,
    })),
  };
}

// Every card's chart drew on and its numbers changed, and the header's dispatched count moved.
function moved(before, after) {
  const earlier = new Map(before.hosts.map(host => [host.name, host]));
  return after.header.dispatched !== before.header.dispatched && after.hosts.every(host => {
    const old = earlier.get(host.name);
    return old && old.numbers !== host.numbers && old.chart && host.chart
      && host.chart.line_span_px > old.chart.line_span_px;
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const failures = [];
  const consoleErrors = [], pageErrors = [], failedRequests = [];
  const profile = mkdtempSync(join(tmpdir(), "vmlb-chromium-"));
  let context;
  const result = { ok: false, url: options.url, screenshot: options.screenshot };
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: options.chromium,
      headless: true,
      args: FLAGS,
      viewport: { width: options.width, height: 900 },
      deviceScaleFactor: options.scale,
    });
    result.browser = context.browser()?.version() ?? null;
    const page = context.pages()[0] ?? await context.newPage();
    page.on("console", message => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", error => pageErrors.push(String(error)));
    page.on("requestfailed", request =>
      failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`));
    page.on("response", response => {
      if (response.status() >= 400) failedRequests.push(`${response.url()}: HTTP ${response.status()}`);
    });

    const response = await page.goto(options.url, { waitUntil: "load", timeout: 20000 });
    if (!response || !response.ok()) throw new Error(`${options.url}: HTTP ${response?.status()}`);
    result.title = await page.title();

    // Cards appear once /hosts answers; wait for every expected one (or any, if none named).
    const want = options.hosts;
    try {
      await page.waitForFunction(names => {
        const shown = [...document.querySelectorAll("#fleet .host .name")].map(n => n.textContent);
        return names.length ? names.every(name => shown.includes(name)) : shown.length > 0;
      }, want, { timeout: options.timeoutS * 1000, polling: 250 });
    } catch {
      const shown = (await page.evaluate(readPage)).hosts.map(h => h.name);
      throw new Error(`host cards did not appear within ${options.timeoutS}s: expected ${JSON.stringify(want.length ? want : ["any host"])}, shown ${JSON.stringify(shown)}`);
    }
    // Until every card has drawn a point, so the first reading has a chart to compare against.
    await page.waitForFunction(() => [...document.querySelectorAll("#fleet .host canvas")]
      .every(canvas => canvas.width > 0), null, { timeout: options.timeoutS * 1000, polling: 250 });
    const before = await page.evaluate(readPage);
    // Watch at least --observe-s, then until the page has moved (a condition, not a time: a
    // loaded machine refreshes slower), or --timeout-s passes and the failures below say what did not.
    const watchedFrom = Date.now();
    let after;
    for (;;) {
      await page.waitForTimeout(500);
      after = await page.evaluate(readPage);
      const watched = (Date.now() - watchedFrom) / 1000;
      if (watched >= options.observeS && moved(before, after)) break;
      if (watched >= options.observeS + options.timeoutS) break;
    }
    await page.screenshot({ path: options.screenshot, fullPage: true });

    const earlier = new Map(before.hosts.map(host => [host.name, host]));
    result.header = { before: before.header, after: after.header };
    result.hosts = after.hosts.map(host => {
      const old = earlier.get(host.name);
      return {
        name: host.name,
        eligible: host.eligible,
        badge: host.badge,
        numbers_before: old?.numbers ?? null,
        numbers: host.numbers,
        numbers_changed: old ? old.numbers !== host.numbers : true,
        bar_fill: host.bar_fill,
        bar_limit: host.bar_limit,
        vms: host.vms,
        chart_line_span_px_before: old?.chart?.line_span_px ?? null,
        chart_line_span_px: host.chart?.line_span_px ?? null,
        chart_changed: Boolean(old?.chart && host.chart && old.chart.digest !== host.chart.digest),
        // The chart covers more time: its I/O line spans more pixels than before.
        chart_grew: Boolean(old?.chart && host.chart && host.chart.line_span_px > old.chart.line_span_px),
      };
    });
    result.dispatched_changed = before.header.dispatched !== after.header.dispatched;
    result.job_types = after.job_types;

    const names = result.hosts.map(host => host.name);
    for (const name of want) if (!names.includes(name)) failures.push(`no card for host ${name} (shown: ${names.join(", ")})`);
    for (const host of result.hosts) {
      if (!host.chart_changed) failures.push(`host ${host.name}: chart did not change in ${options.observeS}s`);
      if (!host.chart_line_span_px) failures.push(`host ${host.name}: chart has no I/O line`);
    }
    const headerChanged = Object.keys(after.header).some(k => k !== "error" && before.header[k] !== after.header[k]);
    result.numbers_changed = headerChanged || result.hosts.some(host => host.numbers_changed);
    if (!result.numbers_changed) failures.push(`no number on the page changed in ${options.observeS}s`);
    if (after.header.error) failures.push(`page says: ${after.header.error}`);
  } catch (error) {
    failures.push(String(error && error.message ? error.message : error));
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  if (consoleErrors.length) failures.push(`console errors: ${consoleErrors.join(" | ")}`);
  if (pageErrors.length) failures.push(`uncaught exceptions: ${pageErrors.join(" | ")}`);
  if (failedRequests.length) failures.push(`failed requests: ${[...new Set(failedRequests)].join(" | ")}`);
  Object.assign(result, {
    ok: failures.length === 0,
    failures,
    console_errors: consoleErrors,
    page_errors: pageErrors,
    failed_requests: [...new Set(failedRequests)],
    elapsed_s: (Date.now() - started) / 1000,
  });
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  if (failures.length) {
    process.stderr.write(`check_page: FAILED\n  ${failures.join("\n  ")}\n`);
    process.exit(1);
  }
}

main().catch(error => {
  process.stderr.write(`check_page: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
