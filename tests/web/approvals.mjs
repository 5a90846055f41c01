// Browser test of Airlock's approvals pages in Debian's Chromium, driven by playwright-core.
// Run by crates/airlock/tests/web.rs, which starts the test IdP, `airlock demo --web-issuer ...
// --web-viewer-group sre --approval-hold 45s`, and two held kubectl calls as the agent, then:
//
//   node tests/web/approvals.mjs
//
// with the environment:
//   ADMIN_URL        the demo's admin listener (http://127.0.0.1:PORT)
//   OUT_DIR          where screenshots go
//   APPROVE_COMMAND  the held command alice approves (kubectl delete namespace X)
//   APPROVE_CONTAINS JSON array of [kind, count] the namespace-contents preview must show
//   DENY_COMMAND     the held command alice denies
//   DENY_REASON      the reason she gives
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// alice (approvers) approves and denies through the forms; carol (sre, a viewer group) sees the
// same pages without buttons and a POST of hers is refused; bob (no allowed group) is refused at
// login. Prints one line per check; exits non-zero at the first failure.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const ADMIN = process.env.ADMIN_URL;
const OUT = process.env.OUT_DIR;
const APPROVE = process.env.APPROVE_COMMAND;
const CONTAINS = JSON.parse(process.env.APPROVE_CONTAINS ?? '[]');
const DENY = process.env.DENY_COMMAND;
const DENY_REASON = process.env.DENY_REASON;
const TIMEOUT = 30_000;

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok: ${what}`);
}

async function idpLogin(page, login) {
  await page.waitForSelector('input[name="login"]', { timeout: TIMEOUT });
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any-password');
  await page.click('button[type="submit"]');
}

// The pending card of `command` on /approvals, reloading until both held calls have arrived.
async function pendingCard(page, command) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const card = page.locator('section.approval.pending', { has: page.locator('code.command', { hasText: command }) });
    if (await card.count() === 1) return card;
    if (Date.now() > deadline) throw new Error(`FAILED: no pending approval for ${command}`);
    await page.waitForTimeout(300);
    await page.reload();
  }
}

const profile = mkdtempSync(join(tmpdir(), 'airlock-chromium-'));
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
  const errors = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));

  // 1. alice signs in at the IdP's form and lands on /approvals.
  await page.goto(`${ADMIN}/approvals`);
  await idpLogin(page, 'alice');
  await page.waitForURL(`${ADMIN}/approvals`, { timeout: TIMEOUT });
  const who = await page.textContent('nav .who');
  check(who.includes('alice') && who.includes('approver'), `signed in as ${who.trim()}`);

  // 2. The held calls are listed as pending, with the command and the dry-run preview.
  const card = await pendingCard(page, APPROVE);
  await pendingCard(page, DENY);
  const text = await card.textContent();
  check(text.includes('agent@demo'), 'the request shows the agent identity');
  check(text.includes('approve-namespace-delete'), 'the request shows the rule');
  check(text.includes('approvers') && text.includes('quorum'), 'the request shows approvers and quorum');
  const contents = await card.locator('table.contains').textContent();
  for (const [kind, n] of CONTAINS) {
    const row = card.locator('table.contains tr', { has: page.locator('th', { hasText: new RegExp(`^${kind}$`) }) });
    const got = (await row.locator('td').textContent()).trim();
    check(got === String(n), `the preview's namespace contents show ${kind} ${n} (${contents.replace(/\s+/g, ' ').trim()})`);
  }
  check(await card.locator('button.approve').count() === 1 && await card.locator('button.deny').count() === 1,
    'alice sees Approve and Deny buttons');
  await page.screenshot({ path: join(OUT, 'approvals.png'), fullPage: true });

  // 3. Approve (with a reason): back on the detail page, now approved.
  await card.locator('form.approve input[name="reason"]').fill('planned cleanup');
  await card.locator('button.approve').click();
  await page.waitForURL(/\/approvals\/[^/]+$/, { timeout: TIMEOUT });
  const approved = await page.textContent('section.approval');
  check(approved.includes('approved') && approved.includes('approved by alice') && approved.includes('planned cleanup'),
    `the detail page shows the approval (${page.url()})`);
  check(await page.locator('form.approve').count() === 0, 'no buttons once decided');
  await page.screenshot({ path: join(OUT, 'approved.png'), fullPage: true });

  // 4. Deny the other one with a reason.
  await page.goto(`${ADMIN}/approvals`);
  const denyCard = await pendingCard(page, DENY);
  await denyCard.locator('form.deny input[name="reason"]').fill(DENY_REASON);
  await denyCard.locator('button.deny').click();
  await page.waitForURL(/\/approvals\/[^/]+$/, { timeout: TIMEOUT });
  const denied = await page.textContent('section.approval');
  const deniedUrl = page.url();
  check(denied.includes('denied by alice') && denied.includes(DENY_REASON), 'the detail page shows the denial and its reason');
  // A second decision on a decided approval is refused with a message, not a crash.
  const again = await page.evaluate(async (u) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(`${u}/approve`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${encodeURIComponent(csrf)}`,
    });
    return [r.status, await r.text()];
  }, new URL(deniedUrl).pathname);
  check(again[0] === 409 && again[1].includes('not pending'), `deciding twice is refused (${again[0]})`);
  check(errors.length === 0, `no CSP violations or script errors (${errors.join('; ')})`);

  // 5. carol (a viewer) sees the approvals read-only, and her POST is refused.
  await page.click('nav form button[type="submit"]');
  await page.waitForSelector('text=you are signed out', { timeout: TIMEOUT });
  await context.clearCookies();
  await page.goto(`${ADMIN}/approvals`);
  await idpLogin(page, 'carol');
  await page.waitForURL(`${ADMIN}/approvals`, { timeout: TIMEOUT });
  const carol = await page.textContent('nav .who');
  check(carol.includes('carol') && !carol.includes('approver'), `signed in as ${carol.trim()}`);
  check(await page.locator('section.approval').count() >= 2, 'carol sees the approvals');
  check(await page.locator('button.approve, button.deny, form.approve, form.deny').count() === 0, 'carol sees no buttons');
  await page.goto(deniedUrl);
  check(await page.locator('button.approve, button.deny').count() === 0, 'no buttons on the detail page either');
  const viewerPost = await page.evaluate(async (u) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(`${u}/deny`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${encodeURIComponent(csrf)}&reason=nope`,
    });
    return r.status;
  }, new URL(deniedUrl).pathname);
  check(viewerPost === 403, `a viewer's POST is refused (${viewerPost})`);
  await page.screenshot({ path: join(OUT, 'viewer.png'), fullPage: true });

  // 6. bob is in no allowed group: refused at login.
  await context.clearCookies();
  const callback = page.waitForResponse((r) => r.url().startsWith(`${ADMIN}/auth/callback`), { timeout: TIMEOUT });
  await page.goto(`${ADMIN}/approvals`);
  await idpLogin(page, 'bob');
  const refused = await callback;
  check(refused.status() === 403, `bob's login is refused (${refused.status()})`);
  const bobTry = await page.request.get(`${ADMIN}/approvals`, { maxRedirects: 0 });
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
