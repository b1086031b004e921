// End-to-end test of the dashboard in a real browser, against a running pingap with real
// backends (tests/dashboard.rs starts them and runs this script; it can be run by hand too).
//
//   ADMIN_URL       the admin listener: the dashboard at /, the API at /api
//   PROXY_URL       a data-plane server whose every request goes to location LOCATION
//   ADMIN_USER, ADMIN_PASSWORD
//   LOCATION        the location to edit (routes everything on PROXY_URL)
//   FROM_UPSTREAM   its upstream now; TO_UPSTREAM the one it is switched to. Each backend
//                   answers every request with 200 and its upstream's name as the body.
//   SCREENSHOT_DIR  where the screenshots go (default: web/e2e-screenshots)
//   CHROMIUM        the browser (default /usr/bin/chromium; playwright-core downloads none)
//
// Exit status 0 when every step passed. Waits are Playwright's auto-waiting and polls with
// deadlines; the only timers are the poll interval and the bounded traffic generator.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') {
    console.error(`error: the environment variable ${name} is required`);
    process.exit(2);
  }
  return v;
};

const ADMIN_URL = env('ADMIN_URL').replace(/\/$/, '');
const PROXY_URL = env('PROXY_URL').replace(/\/$/, '');
const ADMIN_USER = env('ADMIN_USER');
const ADMIN_PASSWORD = env('ADMIN_PASSWORD');
const LOCATION = env('LOCATION', 'api');
const FROM = env('FROM_UPSTREAM', 'blue');
const TO = env('TO_UPSTREAM', 'green');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR', join(dirname(fileURLToPath(import.meta.url)), '..', 'e2e-screenshots'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const BROKEN_UPSTREAM = 'no-such-upstream-e2e';

const TOTAL_TIMEOUT_MS = 170_000; // a safety net: a run takes about 40 s
const POLL_MS = 100;

mkdirSync(SCREENSHOT_DIR, { recursive: true });

// ---------------------------------------------------------------------------------------------
// helpers

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let currentStep = '(start)';
async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  console.log(`▶ ${name}`);
  await fn();
  console.log(`✓ ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s, at ${elapsed()})`);
}

/** Calls `fn` until it returns a truthy value, every POLL_MS, failing after `timeoutMs`. */
async function until(what, fn, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await pause(POLL_MS);
  }
}

/** The body PROXY_URL answers now (loopback only). */
async function proxyBody(path = '/e2e/probe') {
  const res = await fetch(`${PROXY_URL}${path}`, { signal: AbortSignal.timeout(3000) });
  return (await res.text()).trim();
}

/**
 * Sends `perSecond` requests a second to PROXY_URL for `seconds` (bounded: at most
 * perSecond × seconds requests, one at a time), until `stop()` is called.
 */
function traffic(perSecond, seconds, tag) {
  let stopped = false;
  let sent = 0;
  const max = Math.ceil(perSecond * seconds);
  const done = (async () => {
    const t0 = Date.now();
    while (!stopped && sent < max) {
      const due = t0 + (sent * 1000) / perSecond;
      if (due > Date.now()) await pause(due - Date.now());
      sent++;
      try {
        await proxyBody(`/e2e/${tag}/${sent}`);
      } catch {
        // counted all the same; the assertions are made elsewhere
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return sent;
    },
    done,
  };
}

async function screenshot(page, name) {
  const path = join(SCREENSHOT_DIR, name);
  await page.screenshot({ path });
  console.log(`  screenshot ${path}`);
}

/** axe-core on the page as it is: no serious or critical violation. */
async function axe(page, what) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const minor = results.violations.length - bad.length;
  if (bad.length > 0) {
    const lines = bad.map(
      (v) => `  - [${v.impact}] ${v.id}: ${v.help}\n${v.nodes.slice(0, 5).map((n) => `      ${n.target.join(' ')}: ${n.failureSummary?.split('\n').join(' ')}`).join('\n')}`,
    );
    throw new Error(`accessibility violations on ${what}:\n${lines.join('\n')}`);
  }
  console.log(`  axe: ${what}: no serious or critical violations${minor > 0 ? ` (${minor} minor: ${results.violations.map((v) => v.id).join(', ')})` : ''}`);
}

/** Chooses an option of a segmented control (a visually hidden radio) by clicking its label. */
async function chooseSegment(page, name) {
  const radio = page.getByRole('radio', { name, exact: true });
  const id = await radio.getAttribute('id');
  await page.locator(`label[for="${id}"]`).click();
  await until(`"${name}" to be chosen`, () => radio.isChecked());
}

async function apiJson(page, path) {
  const res = await page.request.get(`${ADMIN_URL}${path}`);
  assert.equal(res.status(), 200, `GET ${path} answered ${res.status()}`);
  return res.json();
}

async function runningVersion(page) {
  const history = await apiJson(page, '/api/history');
  const running = history.find((v) => v.running);
  assert.ok(running, 'the history has a running version');
  return running.number;
}

async function goTo(page, linkName, heading) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: linkName, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: heading ?? linkName }).waitFor();
}

// ---------------------------------------------------------------------------------------------
// the run

const consoleErrors = [];
/** Browser-logged failed requests that a step expects (the API's own answers, not app errors). */
let expectedFailures = [];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(() => {
  console.error(`✗ ${currentStep}: the whole run took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let exitCode = 0;
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const url = msg.location().url ?? '';
    const status = /status of (\d{3})/.exec(text)?.[1];
    if (status && expectedFailures.some((f) => f.status === status && f.url.test(url))) return;
    consoleErrors.push(`${text}${url ? ` (${url})` : ''} [during: ${currentStep}]`);
  });
  page.on('pageerror', (err) => {
    consoleErrors.push(`uncaught: ${err.message} [during: ${currentStep}]`);
  });

  await step('the sign-in page is shown', async () => {
    // Before signing in, the dashboard asks /api/session who is signed in: a 401 is the answer.
    expectedFailures = [{ status: '401', url: /\/api\/session$/ }];
    await page.goto(`${ADMIN_URL}/`);
    await page.getByRole('heading', { name: 'Sign in to pingap' }).waitFor();
    await screenshot(page, 'signin.png');
    await axe(page, 'sign in');
  });

  await step('a wrong password is refused with a message', async () => {
    expectedFailures = [
      { status: '401', url: /\/api\/session$/ },
      { status: '401', url: /\/api\/login$/ },
    ];
    await page.getByLabel('User').fill(ADMIN_USER);
    await page.getByLabel('Password', { exact: false }).first().fill(`${ADMIN_PASSWORD}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong user name or password' }).waitFor();
  });

  await step('sign in', async () => {
    await page.getByLabel('Password', { exact: false }).first().fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    expectedFailures = [];
  });

  await step('Overview: live numbers move while traffic flows', async () => {
    const load = traffic(15, 12, 'overview');
    const cell = page.getByTestId(`rps-locations-${LOCATION}`);
    await until(`the requests/s of location ${LOCATION} to rise above 0`, async () => Number.parseFloat((await cell.textContent()) ?? '') > 0, 8000);
    // the minute's count grows second by second while traffic flows
    await chooseSegment(page, 'Last minute');
    const total = page.getByTestId('total-requests');
    const count = async () => Number.parseInt(((await total.textContent()) ?? '').replace(/,/g, ''), 10);
    const first = await until('a request count for the last minute', async () => ((await count()) > 0 ? count() : 0));
    const second = await until('the count of the last minute to grow', async () => {
      const n = await count();
      return n > first ? n : 0;
    });
    console.log(`  requests in the last minute: ${first} then ${second}`);
    await chooseSegment(page, 'Last second');
    const upstreamCell = page.getByTestId(`rps-upstreams-${FROM}`);
    await until(`requests/s of upstream ${FROM} above 0`, async () => Number.parseFloat((await upstreamCell.textContent()) ?? '') > 0);
    const p50 = await page.getByTestId(`stats-locations-${LOCATION}`).locator('td').nth(1).textContent();
    assert.match(p50 ?? '', /(µs|ms|s)$/, `p50 of ${LOCATION} shows a latency, not "${p50}"`);
    const sent = await load.stop();
    console.log(`  ${sent} requests sent`);
    await screenshot(page, 'overview.png');
    await axe(page, 'Overview');
  });

  await step('keyboard: a skip link first, then a visible focus ring', async () => {
    // a fresh load: the Tab order starts at the top of the document
    await page.goto(`${ADMIN_URL}/`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.textContent?.trim());
    assert.equal(first, 'Skip to content', 'the first Tab stop is the skip link');
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      const label = await page.evaluate(() => document.activeElement?.textContent?.trim());
      if (label === 'Upstreams') break;
    }
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      if (!(el instanceof HTMLElement)) return null;
      const s = getComputedStyle(el);
      return { text: el.textContent?.trim(), outline: s.outlineStyle, width: s.outlineWidth, shadow: s.boxShadow };
    });
    assert.equal(focus?.text, 'Upstreams', 'Tab reaches the navigation');
    assert.ok(focus.outline !== 'none' && focus.width !== '0px', `the focused link shows a focus ring (outline ${focus.outline} ${focus.width})`);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Upstreams' }).waitFor();
  });

  await step('Upstreams: every backend up, live', async () => {
    for (const name of [FROM, TO]) {
      const table = page.getByRole('table', { name: `Backends of ${name}` });
      await table.waitFor();
      await table.getByText('up', { exact: true }).first().waitFor();
      await table.getByText('closed', { exact: true }).first().waitFor();
    }
    await screenshot(page, 'upstreams.png');
    await axe(page, 'Upstreams');
  });

  const before = await runningVersion(page);
  console.log(`  running version before the edit: ${before}`);

  await step(`Configuration: switch location ${LOCATION} from ${FROM} to ${TO}, plan first`, async () => {
    await goTo(page, 'Configuration');
    await page
      .getByRole('navigation', { name: 'Locations' })
      .getByRole('link', { name: new RegExp(`^${LOCATION}\\b`) })
      .click();
    await page.getByRole('heading', { name: `location ${LOCATION}` }).waitFor();
    const upstream = page.getByRole('combobox', { name: 'Upstream', exact: true });
    await until(`the Upstream field to show ${FROM}`, async () => (await upstream.inputValue()) === FROM);
    await upstream.fill(TO);
    await upstream.press('Escape');
    assert.equal(await proxyBody(), FROM, 'nothing is applied before the plan is confirmed');
    await page.getByRole('button', { name: 'Review and save' }).click();
    const dialog = page.getByRole('dialog', { name: `Save locations.${LOCATION}` });
    await dialog.waitFor();
    const plan = dialog.getByTestId('plan');
    await plan.getByText(`locations.${LOCATION}`, { exact: true }).waitFor();
    await plan.getByText(`"${FROM}"`, { exact: true }).waitFor();
    await plan.getByText(`"${TO}"`, { exact: true }).waitFor();
    assert.equal(await proxyBody(), FROM, 'the dry run changed nothing');
    await screenshot(page, 'configuration-plan.png');
    await axe(page, 'Configuration, the plan dialog');
    await dialog.getByRole('button', { name: 'Apply' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await until(`the proxy to answer "${TO}"`, async () => (await proxyBody()) === TO, 10_000);
    const after = await runningVersion(page);
    assert.ok(after > before, `a new version is running (${after} > ${before})`);
  });

  await step('Configuration: an unknown upstream is refused on the Upstream field, nothing applied', async () => {
    const versionBefore = await runningVersion(page);
    // the 422 of the dry run is logged by the browser as a failed request
    expectedFailures = [{ status: '422', url: /\/api\/locations\// }];
    const upstream = page.getByRole('combobox', { name: 'Upstream', exact: true });
    await until(`the form to reload with ${TO}`, async () => (await upstream.inputValue()) === TO);
    await upstream.fill(BROKEN_UPSTREAM);
    await upstream.press('Escape');
    await page.getByRole('button', { name: 'Review and save' }).click();
    await until('the Upstream field to be marked invalid', async () => (await upstream.getAttribute('aria-invalid')) === 'true');
    const message = await upstream.evaluate((el) =>
      (el.getAttribute('aria-describedby') ?? '')
        .split(/\s+/)
        .map((id) => document.getElementById(id)?.textContent ?? '')
        .join(' | '),
    );
    assert.match(message, new RegExp(`no upstream named "${BROKEN_UPSTREAM}"`), `the API's message is on the Upstream field (it says: ${message})`);
    assert.equal(await page.getByRole('dialog').count(), 0, 'no plan is offered for an invalid change');
    console.log(`  the Upstream field says: ${message}`);
    await upstream.evaluate((el) => {
      el.scrollIntoView({ block: 'center' });
    });
    await screenshot(page, 'configuration.png');
    await axe(page, 'Configuration, with a field error');
    assert.equal(await proxyBody(), TO, 'the proxy still answers from the last good configuration');
    assert.equal(await runningVersion(page), versionBefore, 'no version was applied');
    await page.getByRole('button', { name: 'Reset' }).click();
    expectedFailures = [];
  });

  await step(`History: roll back to version ${before}, plan first`, async () => {
    await goTo(page, 'History');
    await page.getByTestId(`version-${before}`).waitFor();
    await page.getByRole('button', { name: `Roll back to version ${before}` }).click();
    const dialog = page.getByRole('dialog', { name: `Roll back to version ${before}` });
    await dialog.waitFor();
    await dialog.getByTestId('plan').getByText(`"${TO}"`, { exact: true }).waitFor();
    await dialog.getByTestId('plan').getByText(`"${FROM}"`, { exact: true }).waitFor();
    assert.equal(await proxyBody(), TO, 'the rollback dry run changed nothing');
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await until(`the proxy to answer "${FROM}" again`, async () => (await proxyBody()) === FROM, 10_000);
  });

  await step('History: who, when, trigger, and a diff between two versions', async () => {
    const rollback = page.getByRole('row').filter({ hasText: 'rollback' }).first();
    await rollback.waitFor();
    await rollback.getByText(ADMIN_USER, { exact: true }).waitFor();
    await page.getByRole('button', { name: 'Show diff' }).click();
    const changes = page.getByRole('tabpanel', { name: 'Changes' });
    await changes.getByText(`locations.${LOCATION}`, { exact: true }).waitFor();
    await changes.getByText('upstream', { exact: true }).waitFor();
    await page.getByRole('tab', { name: 'Text' }).click();
    await page.getByRole('region', { name: /Text diff from version/ }).getByText(`"${FROM}"`).waitFor();
    await page.getByRole('tab', { name: 'Changes' }).click();
    await screenshot(page, 'history.png');
    await axe(page, 'History');
  });

  await step('Certificates', async () => {
    await goTo(page, 'Certificates');
    await page.getByText(/No certificates are served|Certificates served/).first().waitFor();
    await screenshot(page, 'certificates.png');
    await axe(page, 'Certificates');
  });

  await step(`Logs: the tail filtered to 2xx of location ${LOCATION}`, async () => {
    await goTo(page, 'Logs');
    await chooseSegment(page, '2xx');
    await page.getByRole('combobox', { name: 'Location' }).click();
    await page.getByRole('option', { name: LOCATION, exact: true }).click();
    await until('the location filter to be set', async () => (await page.getByRole('combobox', { name: 'Location' }).inputValue()) === LOCATION);
    const load = traffic(10, 8, 'logs');
    const lines = page.getByTestId('log-line');
    await until(`log lines of ${LOCATION} with status 2xx`, async () => (await lines.count()) >= 3, 10_000);
    await page.getByTestId('tail-state').getByText('live').waitFor();
    const shown = await lines.evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-status'), r.getAttribute('data-location')]));
    for (const [status, location] of shown) {
      assert.match(status ?? '', /^2\d\d$/, 'every line shown is 2xx');
      assert.equal(location, LOCATION, `every line shown is of location ${LOCATION}`);
    }
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByTestId('tail-state').getByText('paused').waitFor();
    const frozen = await lines.count();
    await until('lines held while paused', async () => /Resume \(\d+ new\)/.test((await page.getByRole('button', { name: /^Resume/ }).textContent()) ?? ''));
    assert.equal(await lines.count(), frozen, 'no line is added while paused');
    await page.getByRole('button', { name: /^Resume/ }).click();
    await until('the held lines to show', async () => (await lines.count()) > frozen);
    await load.stop();
    await screenshot(page, 'logs.png');
    await axe(page, 'Logs');
    await chooseSegment(page, '5xx');
    await until('no 2xx line to stay under the 5xx filter', async () => (await lines.count()) === 0);
  });

  await step('Explain: which location serves a URL, and why', async () => {
    await goTo(page, 'Explain');
    await page.getByLabel('URL', { exact: false }).fill(`${PROXY_URL}/e2e/explain?x=1`);
    await page.getByLabel('Headers', { exact: false }).fill('X-E2E: yes');
    await page.getByRole('button', { name: 'Explain', exact: true }).click();
    const result = page.getByTestId('explain-result');
    await result.getByText(`Served by location ${LOCATION}`).waitFor();
    await result.getByTestId(`candidate-${LOCATION}`).getByText('match', { exact: true }).waitFor();
    await result.getByText(new RegExp(`^${FROM}: `)).first().waitFor();
    await screenshot(page, 'explain.png');
    await axe(page, 'Explain');
  });

  await step('dark mode follows the system', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await goTo(page, 'Overview');
    await until('the dark colour scheme', async () => (await page.locator('html').getAttribute('data-mantine-color-scheme')) === 'dark');
    await screenshot(page, 'overview-dark.png');
    await axe(page, 'Overview (dark)');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  await step('phone width (390 px): the navigation folds behind a button', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await screenshot(page, 'overview-phone.png');
    await axe(page, 'Overview at phone width');
    await page.getByRole('button', { name: 'Open navigation' }).click();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Upstreams', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Upstreams' }).waitFor();
    await screenshot(page, 'upstreams-phone.png');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await step('an ended session sends back to sign in, saying so', async () => {
    // The session is ended behind the page's back (as an idle timeout would); the next
    // request of the page gets 401, which is expected here.
    expectedFailures = [{ status: '401', url: /\/api\// }];
    const res = await page.request.post(`${ADMIN_URL}/api/logout`, { headers: { Origin: ADMIN_URL } });
    assert.equal(res.status(), 204, `logout answered ${res.status()}`);
    await page.getByTestId('session-expired').waitFor({ timeout: 10_000 });
    await page.getByRole('heading', { name: 'Sign in to pingap' }).waitFor();
    await page.getByLabel('User').fill(ADMIN_USER);
    await page.getByLabel('Password', { exact: false }).first().fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Upstreams' }).waitFor();
    expectedFailures = [];
  });

  await step('sign out', async () => {
    expectedFailures = [{ status: '401', url: /\/api\/session$/ }];
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to pingap' }).waitFor();
    const res = await page.request.get(`${ADMIN_URL}/api/session`);
    assert.equal(res.status(), 401, 'the session is over on the server too');
  });

  await step('no console errors', async () => {
    assert.deepEqual(consoleErrors, [], `the page logged errors:\n${consoleErrors.join('\n')}`);
  });

  await context.close();
  console.log(`all steps passed in ${elapsed()}`);
} catch (e) {
  exitCode = 1;
  console.error(`✗ ${currentStep}: ${e instanceof Error ? e.message : String(e)}`);
  if (consoleErrors.length > 0) console.error(`console errors so far:\n${consoleErrors.join('\n')}`);
  if (page !== undefined) {
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'failure.png') }).catch(() => undefined);
    console.error(`  the page at the failure: ${join(SCREENSHOT_DIR, 'failure.png')} (${page.url()})`);
  }
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
process.exit(exitCode);
