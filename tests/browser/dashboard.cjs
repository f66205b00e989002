// Drives the /ui dashboard in headless Chromium with playwright-core (tests/test_dashboard_browser.py
// starts the server, makes the records and jobs, and reads the JSON this prints on its last line).
//
// Environment: KDA_UI_BASE (http://127.0.0.1:PORT), KDA_UI_TOKEN, KDA_JOB_WATCH (a job that runs for a
// few seconds and records an attempt), KDA_JOB_CANCEL (a job that runs until cancelled), KDA_BEST (an
// attempt with a profile), KDA_DEFINITION, KDA_ARTIFACTS (folder for screenshots), KDA_CHROMIUM.
"use strict";
const path = require("path");
const { chromium } = require("playwright-core");

const env = process.env;
const base = env.KDA_UI_BASE;
const shots = env.KDA_ARTIFACTS;
const out = { steps: [], screenshots: [], foreign_requests: [], console_errors: [], failed_requests: [], error_responses: [] };

function step(name, extra) {
  out.steps.push(Object.assign({ name: name, t: Date.now() }, extra || {}));
}

async function shot(page, name, fullPage) {
  const file = path.join(shots, name);
  await page.screenshot({ path: file, fullPage: fullPage !== false });
  out.screenshots.push(file);
}

async function imagesLoaded(page, selector) {
  await page.waitForFunction(
    (sel) => {
      const imgs = Array.from(document.querySelectorAll(sel));
      return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0);
    },
    selector,
    { timeout: 20000 }
  );
  return page.$$eval(selector, (imgs) => imgs.map((img) => [img.naturalWidth, img.naturalHeight]));
}

function jobRow(job) {
  return `tr:has(.job-id[data-job-id="${job}"])`;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: env.KDA_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) out.foreign_requests.push(r.url()); });
    page.on("requestfailed", (r) => out.failed_requests.push(r.url() + " " + (r.failure() || {}).errorText));
    page.on("response", (r) => { if (r.status() >= 400) out.error_responses.push(r.status() + " " + r.request().method() + " " + r.url()); });
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push({ text: m.text(), url: (m.location() || {}).url || "" }); });
    page.on("pageerror", (e) => out.console_errors.push({ text: String(e), url: page.url() }));

    // 1. Log in: /ui/ sends us to the form, the form back to the queue.
    await page.goto(base + "/ui/");
    step("login form", { url: page.url() });
    await shot(page, "01-login.png", false);
    await page.fill("#token", "wrong-token");
    await page.click("button[type=submit]");
    await page.waitForSelector(".error");
    step("wrong token refused", { text: await page.textContent(".error") });
    await page.fill("#token", env.KDA_UI_TOKEN);
    await Promise.all([page.waitForURL(base + "/ui/"), page.click("button[type=submit]")]);
    const cookies = await context.cookies();
    step("logged in", { url: page.url(), cookie: cookies.map((c) => [c.name, c.path, c.httpOnly, c.sameSite]) });

    // 2. Watch a job run on its GPU and finish, without reloading the page.
    await page.evaluate(() => { window.__kdaNoReload = 42; });
    const card = `.gpu [data-job-id="${env.KDA_JOB_WATCH}"][data-status="running"]`;
    await page.waitForSelector(card);
    await page.waitForFunction((sel) => {
      const p = document.querySelector(sel + " progress");
      return p && p.value >= 1;
    }, card);
    step("job running", {
      gpu: await page.$eval(card, (el) => el.closest(".gpu").getAttribute("data-gpu")),
      progress: await page.$eval(card + " .job-progress", (el) => el.textContent.trim()),
    });
    await shot(page, "02-queue-running.png");
    await page.waitForSelector(`${jobRow(env.KDA_JOB_WATCH)} .b-succeeded`, { timeout: 40000 });
    const attemptHref = await page.$eval(`${jobRow(env.KDA_JOB_WATCH)} a[href^="/ui/attempts/"]`, (a) => a.getAttribute("href"));
    step("job finished", { attempt: attemptHref, no_reload: await page.evaluate(() => window.__kdaNoReload === 42) });

    // 3. Cancel the other job: the first click arms the button, the second cancels.
    const cancel = `.gpu button.cancel[data-job="${env.KDA_JOB_CANCEL}"]`;
    await page.click(cancel);
    await page.waitForSelector(`${cancel}.confirm`);
    await page.click(cancel);
    await page.waitForSelector(`${jobRow(env.KDA_JOB_CANCEL)} .b-cancelled`, { timeout: 30000 });
    step("job cancelled", { no_reload: await page.evaluate(() => window.__kdaNoReload === 42) });
    await shot(page, "03-queue-finished.png");

    // 4. Open the attempt the job recorded.
    await Promise.all([page.waitForURL(base + attemptHref), page.click(`${jobRow(env.KDA_JOB_WATCH)} a[href="${attemptHref}"]`)]);
    const latency = await imagesLoaded(page, 'img[data-chart="latency"]');
    step("attempt page", { h1: await page.textContent("h1"), latency: latency, workloads: await page.$$eval("table.workloads tbody tr", (r) => r.length) });
    await shot(page, "04-attempt.png");

    // 5. Follow its lineage, then a node of the graph to the parent attempt.
    await Promise.all([page.waitForURL(/\/ui\/lineage\//), page.click('dd a[href*="/ui/lineage/"]')]);
    await page.waitForSelector("svg.lineage");
    step("lineage page", {
      nodes: await page.$$eval("svg.lineage a.node-link", (n) => n.map((a) => a.getAttribute("data-attempt"))),
      on_path: await page.$$eval("svg.lineage .edge.on-path", (e) => e.length),
      focus: await page.$$eval("svg.lineage .focus", (e) => e.length),
    });
    await shot(page, "05-lineage.png");
    await Promise.all([page.waitForURL(base + "/ui/attempts/" + env.KDA_BEST), page.click(`svg.lineage a[data-attempt="${env.KDA_BEST}"]`)]);
    const roofline = await imagesLoaded(page, 'img[data-chart="roofline"]');
    step("parent attempt", { h1: await page.textContent("h1"), roofline: roofline });
    await shot(page, "06-attempt-with-profile.png");

    // 6. Definitions, and one definition's speedup over time.
    await page.click('.main-nav a[href="/ui/definitions"]');
    await page.waitForSelector("table.definitions");
    await shot(page, "07-definitions.png");
    await Promise.all([page.waitForURL(/\/ui\/definitions\/.+/), page.click(`table.definitions a[href="/ui/definitions/${env.KDA_DEFINITION}"]`)]);
    const history = await imagesLoaded(page, 'img[data-chart="speedup_history"]');
    step("definition page", { history: history, attempts: await page.$$eval("table.attempts tbody tr", (r) => r.length) });
    await shot(page, "08-definition.png");
  } catch (err) {
    out.error = String(err && err.stack ? err.stack : err);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
})();
