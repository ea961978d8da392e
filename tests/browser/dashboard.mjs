// Drives Debian's chromium (playwright-core, no browser download) through the dashboard.
// Env: DASHBOARD_URL, DEVICE_LIVE, DEVICE_STOPPING, SCREENSHOT, USER_DATA_DIR, CHROMIUM (optional).
// Protocol with tests/test_dashboard_browser.py, one JSON line per step on stdout:
//   {"step":"ready", ...}   both agents online and a face's emotion shown -> the test stops one agent
//   {"step":"done", ...}    the stopped agent shows offline; screenshot written
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
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(env.DASHBOARD_URL, { timeout: TIMEOUT });
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
  say({ step: "ready", emotion, gender });

  await page.waitForSelector(`${device(env.DEVICE_STOPPING)}[data-status="offline"]`, { timeout: TIMEOUT });
  const statusText = (await page.textContent(`${device(env.DEVICE_STOPPING)} .status`)).trim();
  const liveStatus = await page.getAttribute(device(env.DEVICE_LIVE), "data-status");
  const fps = (await page.textContent(`${device(env.DEVICE_LIVE)} .fps`)).trim();
  const latency = (await page.textContent(`${device(env.DEVICE_LIVE)} .latency`)).trim();
  // the timeline canvas has drawn something (non-background pixels)
  const painted = await page.evaluate((sel) => {
    const c = document.querySelector(sel);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }, `${device(env.DEVICE_LIVE)} canvas.timeline`);
  await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  say({ step: "done", statusText, liveStatus, fps, latency, painted, errors });
} finally {
  await context.close();
}
