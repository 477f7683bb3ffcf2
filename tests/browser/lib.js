// Shared helpers of the browser tests: Debian chromium through
// playwright-core, the daemon under test (started by the Rust wrapper,
// tests/tests/browser_ui.rs, which passes its address in the environment),
// API calls with the admin token, screenshots into target/screenshots/.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, '..', '..');

export const BASE = process.env.CRONSUN_URL || '';
export const STATE_DIR = process.env.CRONSUN_STATE_DIR || '';

/** Fails clearly when the tests were not started by their Rust wrapper. */
export function requireDaemon() {
  for (const [name, v] of [['CRONSUN_URL', BASE], ['CRONSUN_STATE_DIR', STATE_DIR]]) {
    if (!v) throw new Error(`${name} is not set: run the browser tests through \`cargo test -p cronsun-tests --test browser_ui\`, which starts cronsund and sets it`);
  }
}
export const TOKEN = () => readFileSync(join(STATE_DIR, 'admin.token'), 'utf8').trim();
export const SHOTS = process.env.CRONSUN_SCREENSHOTS || join(repo, 'target', 'screenshots');
export const CHROMIUM = process.env.CRONSUN_CHROMIUM || '/usr/bin/chromium';

export const LAPTOP = { width: 1366, height: 860 };
export const PHONE = { width: 390, height: 844 };

/** Launches chromium with a fresh profile; `close()` stops it and removes the profile. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'cronsun-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: LAPTOP,
    locale: 'en-GB',
    timezoneId: 'Asia/Shanghai',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  ctx.setDefaultTimeout(15000);
  const errors = [];
  ctx.on('weberror', (e) => errors.push(`page error: ${e.error().message}`));
  ctx.on('console', (m) => {
    if (m.type() === 'error' && !/status of (401|403|404|409|422)/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return {
    ctx,
    errors,
    async page() {
      const p = ctx.pages()[0] || (await ctx.newPage());
      return p;
    },
    async newPage() {
      return ctx.newPage();
    },
    async close() {
      await ctx.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A JSON API call as admin (Bearer token). */
export async function api(method, path, body, headers = {}) {
  const res = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN()}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  return { status: res.status, data, headers: res.headers };
}

/** Saves a screenshot of `page` at laptop and phone width: target/screenshots/<name>-{laptop,phone}.png. */
export async function shoot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const size = page.viewportSize();
  for (const [label, vp] of [['laptop', LAPTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    await page.waitForTimeout(50); // one layout pass after the resize (not a wait for data)
    await page.screenshot({ path: join(SHOTS, `${name}-${label}.png`), fullPage: true });
  }
  if (size) await page.setViewportSize(size);
}

/** Signs in through the login page. */
export async function login(page, user, password) {
  await page.goto(`${BASE}/ui/login`);
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

export function initialPassword() {
  return readFileSync(join(STATE_DIR, 'initial-admin-password'), 'utf8').trim();
}

export function uniqueId(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}
