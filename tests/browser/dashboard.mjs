// Drives Debian's chromium (playwright-core, no browser download) through the dashboard.
// Env: DASHBOARD_URL, DEVICE_LIVE, DEVICE_STOPPING, DEVICE_OLD, MALFORMED_COUNT, SCREENSHOT,
// USER_DATA_DIR, CHROMIUM (optional).
// Protocol with tests/test_dashboard_browser.py, one JSON line per step on stdout:
//   {"step":"ready", ...}   both agents online, a face shown, the agent that ran before the page
//                           opened greyed with its last-seen time and its summary on the timeline
//                           -> the test publishes malformed payloads, then stops one agent
//   {"step":"done", ...}    the stopped agent shows offline, the malformed ones are counted, it is
//                           dismissed and stays gone after a reload; screenshot written
import { chromium } from "playwright-core";

const env = process.env;
const TIMEOUT = Number(env.STEP_TIMEOUT_MS || 60000);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const device = (id) => `section.device[data-device="${id}"]`;

const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1100, height: 620 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  const failed = []; // HTTP errors, favicon included
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  const response = await page.goto(env.DASHBOARD_URL, { timeout: TIMEOUT });
  const csp = (await response.allHeaders())["content-security-policy"] || "";
  await page.waitForSelector('#conn[data-state="live"]', { timeout: TIMEOUT });
  await page.waitForSelector('#broker[data-state="connected"]', { timeout: TIMEOUT });
  for (const id of [env.DEVICE_LIVE, env.DEVICE_STOPPING]) {
    await page.waitForSelector(`${device(id)}[data-status="online"]`, { timeout: TIMEOUT });
  }
  const face = `${device(env.DEVICE_STOPPING)} li.face .emo`;
  await page.waitForSelector(face, { timeout: TIMEOUT });
  const emotion = (await page.textContent(face)).trim();
  const gender = (await page.textContent(`${device(env.DEVICE_STOPPING)} li.face .gender`)).trim();
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.textContent.trim() !== "–",
    `${device(env.DEVICE_LIVE)} .fps`,
    { timeout: TIMEOUT },
  );
  const liveGender = (await page.textContent(`${device(env.DEVICE_LIVE)} li.face .gender`)).trim();
  const old = device(env.DEVICE_OLD);
  await page.waitForSelector(`${old}[data-status="offline"]`, { timeout: TIMEOUT });
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith("last seen "),
    `${old} .last-seen`, { timeout: TIMEOUT });
  const oldSeen = (await page.textContent(`${old} .last-seen`)).trim();
  const oldGrey = await page.evaluate((sel) => getComputedStyle(document.querySelector(sel)).filter, old);
  const oldPainted = await painted(page, `${old} canvas.timeline`);
  const favicon = await page.evaluate(async () => {
    const link = document.querySelector('link[rel="icon"]');
    const r = await fetch(link.href);
    return `${r.status} ${r.headers.get("content-type")}`;
  });
  say({ step: "ready", emotion, gender, liveGender, oldSeen, oldGrey, oldPainted, favicon, csp });

  const stopping = device(env.DEVICE_STOPPING);
  await page.waitForSelector(`${stopping}[data-status="offline"]`, { timeout: TIMEOUT });
  await page.waitForFunction((n) => Number(document.querySelector("#skipped")?.dataset.count) >= n,
    Number(env.MALFORMED_COUNT), { timeout: TIMEOUT });
  const skipped = Number(await page.getAttribute("#skipped", "data-count"));
  const statusText = (await page.textContent(`${stopping} .status`)).trim();
  const stoppedSeen = (await page.textContent(`${stopping} .last-seen`)).trim();
  const liveStatus = await page.getAttribute(device(env.DEVICE_LIVE), "data-status");
  const fps = (await page.textContent(`${device(env.DEVICE_LIVE)} .fps`)).trim();
  const latency = (await page.textContent(`${device(env.DEVICE_LIVE)} .latency`)).trim();
  const livePainted = await painted(page, `${device(env.DEVICE_LIVE)} canvas.timeline`);
  await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  await page.click(`${stopping} button.dismiss`);
  await page.waitForSelector(stopping, { state: "detached", timeout: TIMEOUT });
  await page.reload({ timeout: TIMEOUT });
  await page.waitForSelector(`${device(env.DEVICE_LIVE)}[data-status="online"]`, { timeout: TIMEOUT });
  const afterReload = await page.$$eval("section.device", (els) => els.map((e) => e.dataset.device));
  say({ step: "done", statusText, stoppedSeen, skipped, liveStatus, fps, latency, livePainted, afterReload,
        errors, failed });
} finally {
  await context.close();
}

// how many pixels of bars a timeline canvas has drawn (below its "-5 min ... now" labels)
async function painted(page, sel) {
  return page.evaluate((s) => {
    const c = document.querySelector(s);
    const d = c.getContext("2d").getImageData(0, 14, c.width, c.height - 14).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }, sel);
}
