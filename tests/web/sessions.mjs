// Browser test of Airlock's web UI in Debian's Chromium, driven by playwright-core.
// Run by crates/airlock/tests/web.rs, which starts the test IdP (tests/oidc/provider.mjs) and
// `airlock demo --web-issuer ...`, makes some kubectl calls, then runs:
//
//   node tests/web/sessions.mjs
//
// with the environment:
//   ADMIN_URL        the demo's admin listener (http://127.0.0.1:PORT)
//   OUT_DIR          where screenshots go
//   EXPECT_USER      the agent whose session must be listed (agent@demo)
//   EXPECT_COMMANDS  JSON array of substrings the session's timeline must show
//   EXPECT_SCREEN    JSON array: the lines the recording player must end up showing
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Prints one line per check; exits non-zero at the first failure.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const ADMIN = process.env.ADMIN_URL;
const OUT = process.env.OUT_DIR;
const USER = process.env.EXPECT_USER ?? 'agent@demo';
const COMMANDS = JSON.parse(process.env.EXPECT_COMMANDS ?? '[]');
const SCREEN = JSON.parse(process.env.EXPECT_SCREEN ?? '[]');
const TIMEOUT = 30_000;

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok: ${what}`);
}

// Logs in at the test IdP's dev-interactions form (any password works).
async function idpLogin(page, login) {
  await page.waitForSelector('input[name="login"]', { timeout: TIMEOUT });
  check(!page.url().startsWith(ADMIN), `redirected to the IdP's login form (${new URL(page.url()).pathname})`);
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any-password');
  await page.click('button[type="submit"]');
}

const profile = mkdtempSync(join(tmpdir(), 'airlock-chromium-'));
// A persistent context gives Chromium a fresh, empty --user-data-dir of our own.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
});
let failed = false;
try {
  const page = context.pages()[0] ?? await context.newPage();
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => cspViolations.push(`page error: ${e.message}`));

  // 1. Signed out: /sessions sends the browser through /auth/login to the IdP.
  await page.goto(`${ADMIN}/sessions`);
  await idpLogin(page, 'alice');

  // 2. Back from the IdP, signed in, on the sessions list.
  await page.waitForURL(`${ADMIN}/sessions`, { timeout: TIMEOUT });
  await page.waitForSelector('table.sessions', { timeout: TIMEOUT });
  const who = await page.textContent('nav .who');
  check(who.includes('alice') && who.includes('approver'), `signed in as ${who.trim()}`);
  const sessionLink = page.locator('a.session', { hasText: USER }).first();
  check(await sessionLink.count() === 1, `the list shows a session of ${USER}`);
  const listResp = await page.request.get(`${ADMIN}/sessions`);
  const csp = listResp.headers()['content-security-policy'] ?? '';
  check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), `strict CSP: ${csp}`);
  await page.screenshot({ path: join(OUT, 'sessions.png'), fullPage: true });

  // 3. The session's timeline shows the kubectl commands, with decisions and statuses.
  await sessionLink.click();
  await page.waitForSelector('table.timeline', { timeout: TIMEOUT });
  const timeline = await page.textContent('table.timeline');
  for (const c of COMMANDS) check(timeline.includes(c), `the timeline shows "${c}"`);
  check(timeline.includes('allow') && timeline.includes('200'), 'the timeline shows decisions and statuses');

  // 4. The recording player plays the exec's output: timing, \r overwrites, ANSI stripped.
  if (SCREEN.length) {
    const player = page.locator('.player').first();
    await player.locator('select.speed').selectOption('2');
    await player.locator('button.play').click();
    await page.waitForFunction(
      () => document.querySelector('.player')?.dataset.state === 'ended',
      null,
      { timeout: TIMEOUT },
    );
    const screen = await player.locator('.screen').textContent();
    const lines = screen.split('\n').filter((l) => l !== '');
    check(JSON.stringify(lines) === JSON.stringify(SCREEN), `the player shows ${JSON.stringify(lines)}`);
    check(!screen.includes('\x1b') && !screen.includes('[1m'), 'escape sequences are not shown');
  }
  await page.screenshot({ path: join(OUT, 'session.png'), fullPage: true });
  check(cspViolations.length === 0, `no CSP violations or script errors (${cspViolations.join('; ')})`);

  // 5. CSRF: a POST without the session's token is refused, even from the same origin.
  const forged = await page.evaluate(async () => {
    const r = await fetch('/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=forged',
    });
    return r.status;
  });
  check(forged === 403, `a POST with a wrong CSRF token is refused (${forged})`);
  const still = await page.request.get(`${ADMIN}/sessions`, { maxRedirects: 0 });
  check(still.status() === 200, 'the session survived the forged POST');

  // 6. Sign out (the real form, with its token): the session ends.
  await page.click('nav form button[type="submit"]');
  await page.waitForSelector('text=you are signed out', { timeout: TIMEOUT });
  const after = await page.request.get(`${ADMIN}/sessions`, { maxRedirects: 0 });
  check(after.status() === 303 && after.headers().location.startsWith('/auth/login'),
    `signed out: /sessions redirects to ${after.headers().location}`);

  // 7. bob is a real user of the IdP but in no allowed group: refused with a 403 page.
  await context.clearCookies();
  const callback = page.waitForResponse((r) => r.url().startsWith(`${ADMIN}/auth/callback`), { timeout: TIMEOUT });
  await page.goto(`${ADMIN}/sessions`);
  await idpLogin(page, 'bob');
  const refused = await callback;
  check(refused.status() === 403, `bob's login is refused (${refused.status()})`);
  await page.waitForSelector('text=none of the groups', { timeout: TIMEOUT });
  await page.screenshot({ path: join(OUT, 'refused.png') });
  const bobTry = await page.request.get(`${ADMIN}/sessions`, { maxRedirects: 0 });
  check(bobTry.status() === 303, 'bob has no session');
} catch (err) {
  failed = true;
  console.error(err.stack ?? String(err));
  try {
    const page = context.pages()[0];
    if (page) {
      console.error(`at ${page.url()}`);
      await page.screenshot({ path: join(OUT, 'failure.png'), fullPage: true });
    }
  } catch { /* best effort */ }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
