// Browser tests of the cronsun web UI against a real cronsund (started by
// tests/tests/browser_ui.rs). One chromium for the admin, one for a viewer;
// every page is photographed at laptop and phone width into
// target/screenshots/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { launch, shoot, api, login, initialPassword, uniqueId, requireDaemon, repo, BASE, SHOTS, PHONE, LAPTOP } from './lib.js';

function uiFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? uiFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

const LONG_WAIT = { timeout: 30000 };

describe('cronsun web UI', () => {
  let admin;
  let page;
  const jobId = uniqueId('ui-job');
  const longId = uniqueId('ui-long');

  before(async () => {
    requireDaemon();
    admin = await launch();
    page = await admin.page();
  });

  after(async () => {
    if (admin) {
      const errs = admin.errors.filter((e) => !/Failed to load resource/.test(e));
      await admin.close();
      assert.deepEqual(errs, [], 'no script errors in the admin browser');
    }
  });

  it('serves the app with a strict CSP and deep links', async () => {
    const res = await fetch(`${BASE}/ui/jobs/some-job`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const etag = res.headers.get('etag');
    assert.ok(etag);
    const again = await fetch(`${BASE}/ui/jobs/some-job`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    assert.equal((await fetch(`${BASE}/ui/js/missing.js`)).status, 404);
    const root = await fetch(`${BASE}/`, { redirect: 'manual' });
    assert.equal(root.headers.get('location'), '/ui/');
  });

  it('serves exactly the files in ui/ (the binary under test is not stale)', async () => {
    const ui = join(repo, 'ui');
    for (const f of uiFiles(ui)) {
      const path = relative(ui, f);
      const res = await fetch(`${BASE}/ui/${path}`);
      assert.equal(res.status, 200, path);
      const served = Buffer.from(await res.arrayBuffer());
      assert.ok(served.equals(readFileSync(f)), `${path} differs from the embedded copy: rebuild cronsund (cargo build -p cronsund)`);
    }
  });

  it('logs in with the first-start password', async () => {
    await page.goto(`${BASE}/`);
    await page.waitForURL(/\/ui\/login/);
    await page.getByText('initial-admin-password').waitFor();
    await shoot(page, 'login');
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('Wrong user or password.').waitFor();
    // Keyboard only: the user field has focus, Tab reaches the password, Enter submits.
    await page.getByLabel('User').focus();
    await page.keyboard.press('Tab');
    await page.keyboard.type(initialPassword());
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.getByRole('link', { name: 'Accounts' }).waitFor();
    await page.getByText('Pause all scheduling').waitFor();
    // Statistics: the chart when the daemon serves them, else a clear "unavailable" state.
    const stats = await api('GET', '/stats/daily?days=14');
    if (stats.status === 200) {
      assert.equal(stats.data.days.length, 14);
      await page.locator('.chart.per-day svg').waitFor();
    } else {
      assert.equal(stats.status, 404);
      await page.locator('#stats-unavailable').waitFor();
    }
    await shoot(page, 'dashboard');
  });

  it('creates a job through the editor, seeing the preview and the API\'s field errors', async () => {
    await page.getByRole('link', { name: 'Jobs', exact: true }).click();
    await page.getByRole('link', { name: 'New job' }).click();
    await page.getByRole('heading', { name: 'New job' }).waitFor();
    await page.getByLabel('Id', { exact: true }).fill(jobId);
    await page.getByLabel('Name', { exact: true }).fill('UI made job');
    await page.getByLabel('Group', { exact: true }).fill('ui');
    await page.getByLabel('Command', { exact: true }).fill('for i in 1 2 3 4 5 6; do echo tick-$i; sleep 1; done');
    await page.getByLabel('run with /bin/sh -c').check();
    const schedule = page.getByLabel('Schedule', { exact: true });
    await schedule.fill('61 * * * *');
    await page.locator('.preview .field-error').waitFor();
    await schedule.fill('0 6 * * MON-FRI');
    await page.getByLabel('Time zone', { exact: true }).fill('America/New_York');
    await page.locator('#preview-list li').nth(9).waitFor();
    const first = await page.locator('#preview-list li').first().textContent();
    assert.match(first, /06:00:00 (EST|EDT|GMT-[45])/, `preview in the chosen zone: ${first}`);
    await page.getByLabel('Timeout', { exact: true }).fill('soon');
    await page.getByRole('button', { name: 'Create job' }).click();
    const err = page.locator('[data-field-wrap="timeout"] .field-error');
    await err.waitFor();
    assert.match(await err.textContent(), /timeout/);
    await shoot(page, 'editor-error');
    await page.getByLabel('Timeout', { exact: true }).fill('1m');
    await shoot(page, 'editor');
    await page.getByRole('button', { name: 'Create job' }).click();
    await page.getByRole('heading', { name: 'UI made job' }).waitFor();
    const stored = await api('GET', `/jobs/${jobId}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.data.job.rules[0].timezone, 'America/New_York');
    assert.equal(stored.data.job.timeout, '1m');
  });

  it('runs the job and shows its live output', async () => {
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.waitForURL(/\/ui\/runs\//);
    await page.getByText('Live: following the output').waitFor();
    await page.locator('#output', { hasText: 'tick-1' }).waitFor();
    assert.ok(!(await page.locator('#output').textContent()).includes('tick-6'), 'output arrives while the run goes on');
    await shoot(page, 'run-live');
    await page.locator('#output', { hasText: 'tick-6' }).waitFor(LONG_WAIT);
    await page.locator('#run-status', { hasText: 'success' }).waitFor(LONG_WAIT);
    // Times are in the viewer's zone; the job's zone is on hover.
    assert.match(await page.locator('dl.meta time').first().getAttribute('title'), /America\/New_York/);
    await shoot(page, 'run');
    await page.getByRole('link', { name: 'UI made job' }).first().click();
    await page.locator('.chart svg').waitFor();
    await shoot(page, 'job');
  });

  it('kills a long run', async () => {
    const created = await api('POST', '/jobs', {
      id: longId, group: 'ui', command: ['sh', '-c', 'i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo line $i; sleep 0.2; done'], rules: [{ schedule: '@yearly' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.data));
    await page.goto(`${BASE}/ui/jobs/${longId}`);
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.locator('#output', { hasText: 'line 2' }).waitFor();
    await page.getByRole('button', { name: 'Kill' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Kill' }).click();
    await page.locator('#run-status', { hasText: 'killed' }).waitFor(LONG_WAIT);
    await shoot(page, 'run-killed');
  });

  it('shows theirs vs yours on an edit conflict and can overwrite', async () => {
    await page.goto(`${BASE}/ui/jobs/${jobId}/edit`);
    await page.getByLabel('Name', { exact: true }).fill('Mine now');
    const cur = await api('GET', `/jobs/${jobId}`);
    const theirs = { ...cur.data.job, description: 'changed meanwhile by someone else' };
    const changed = await api('PUT', `/jobs/${jobId}`, theirs, { 'If-Match': `"${cur.data.job.revision}"` });
    assert.equal(changed.status, 200, JSON.stringify(changed.data));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#conflict').waitFor();
    await page.locator('#conflict tr', { hasText: 'description' }).waitFor();
    await page.locator('#conflict tr', { hasText: 'Mine now' }).waitFor();
    await shoot(page, 'conflict');
    await page.getByRole('button', { name: 'Overwrite with mine' }).click();
    await page.getByRole('heading', { name: 'Mine now' }).waitFor();
    const after = await api('GET', `/jobs/${jobId}`);
    assert.equal(after.data.job.name, 'Mine now');
  });

  it('clones a job, then deletes the clone', async () => {
    await page.goto(`${BASE}/ui/jobs/${jobId}`);
    await page.getByRole('link', { name: 'Clone' }).click();
    await page.getByRole('heading', { name: 'New job' }).waitFor();
    assert.equal(await page.getByLabel('Id', { exact: true }).inputValue(), `${jobId}-copy`);
    await page.getByRole('button', { name: 'Create job' }).click();
    await page.getByRole('heading', { name: 'Mine now (copy)' }).waitFor();
    const clone = await api('GET', `/jobs/${jobId}-copy`);
    assert.equal(clone.data.job.rules[0].schedule, '0 6 * * MON-FRI');
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(/\/ui\/jobs$/);
    assert.equal((await api('GET', `/jobs/${jobId}-copy`)).status, 404);
  });

  it('keeps secret environment values write-only through an edit', async () => {
    const id = uniqueId('ui-secret');
    const created = await api('POST', '/jobs', {
      id, group: 'ui', command: ['sh', '-c', '[ "${#TOKEN}" -eq 12 ] && echo token-kept'], rules: [{ schedule: '@yearly' }],
      env: { TOKEN: { value: 's3cret-value', secret: true }, PLAIN: 'visible' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.data));
    await page.goto(`${BASE}/ui/jobs/${id}/edit`);
    await page.locator('.env-row').nth(1).waitFor();
    assert.ok(!(await page.content()).includes('s3cret-value'), 'the secret never reaches the page');
    await page.getByLabel('Name', { exact: true }).fill('Secret keeper');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: 'Secret keeper' }).waitFor();
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.locator('#output', { hasText: 'token-kept' }).waitFor(LONG_WAIT);
    await page.locator('#run-status', { hasText: 'success' }).waitFor(LONG_WAIT);
  });

  it('filters the job list and the run search', async () => {
    await page.goto(`${BASE}/ui/jobs`);
    await page.locator('.jobs-table').waitFor();
    await page.getByLabel('Search').fill('mine now');
    await page.getByText('1 of 3 jobs').waitFor();
    await page.getByLabel('Search').fill('');
    await page.getByLabel('Status', { exact: true }).selectOption('failing');
    await page.getByText('1 of 3 jobs').waitFor();
    await page.getByRole('link', { name: longId }).waitFor();
    await page.getByLabel('Status', { exact: true }).selectOption('');
    await shoot(page, 'jobs');
    await page.goto(`${BASE}/ui/runs`);
    await page.getByLabel('Status').selectOption('killed');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/status=killed/);
    await page.locator('td .badge.st-killed').first().waitFor();
    assert.equal(await page.locator('td .badge.st-success').count(), 0);
    await page.goto(`${BASE}/ui/no/such/page`);
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  });

  it('admin pages: runs, nodes, accounts (creates a viewer), tokens, audit', async () => {
    await page.goto(`${BASE}/ui/runs?job=${jobId}`);
    await page.locator('td .badge').first().waitFor();
    await shoot(page, 'runs');
    await page.goto(`${BASE}/ui/nodes`);
    await page.getByText('alive', { exact: true }).waitFor();
    await page.getByRole('link', { name: 'ui', exact: true }).waitFor();
    await shoot(page, 'nodes');
    // Standalone: the only node cannot be drained; the API's reason shows.
    await page.getByRole('button', { name: 'Drain', exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Drain', exact: true }).click();
    await page.locator('.toast.bad', { hasText: 'standalone' }).waitFor();
    await page.goto(`${BASE}/ui/accounts`);
    const form = page.locator('#new-account');
    await form.getByLabel('User').fill('vera');
    await form.getByLabel('Password').fill('viewer-password-42');
    await form.getByLabel('Role').selectOption('viewer');
    await form.getByRole('button', { name: 'Create account' }).click();
    await page.locator('td', { hasText: 'vera' }).waitFor();
    await shoot(page, 'accounts');
    await page.goto(`${BASE}/ui/tokens`);
    const tform = page.locator('#new-token');
    await tform.getByLabel('Name').fill('ci-reader');
    await tform.getByRole('button', { name: 'Create token' }).click();
    await page.locator('#token-secret').waitFor();
    await shoot(page, 'tokens');
    await page.goto(`${BASE}/ui/audit`);
    await page.locator('main table, main .empty').first().waitFor();
    await shoot(page, 'audit');
  });

  it('pauses all scheduling with a reason and resumes', async () => {
    await page.goto(`${BASE}/ui/`);
    await page.getByRole('button', { name: 'Pause all scheduling' }).click();
    await page.getByRole('dialog').getByLabel('Reason').fill('database migration');
    await page.getByRole('dialog').getByRole('button', { name: 'Pause' }).click();
    await page.locator('.banner.paused', { hasText: 'database migration' }).waitFor();
    const p = await api('GET', '/pause');
    assert.equal(p.data.paused, true);
    assert.equal(p.data.reason, 'database migration');
    await shoot(page, 'dashboard-paused');
    await page.locator('.chart.per-day svg rect.st-killed').first().waitFor();
    await page.locator('#resume-all').click();
    await page.locator('.banner.paused').waitFor({ state: 'detached' });
    assert.equal((await api('GET', '/pause')).data.paused, false);
  });

  it('a viewer sees no edit controls and the API refuses them', async () => {
    const viewer = await launch();
    try {
      const vp = await viewer.page();
      await login(vp, 'vera', 'viewer-password-42');
      assert.equal(await vp.getByRole('link', { name: 'Accounts' }).count(), 0);
      assert.equal(await vp.getByRole('button', { name: /Pause all/ }).count(), 0);
      await vp.goto(`${BASE}/ui/jobs`);
      await vp.getByRole('link', { name: 'Mine now' }).waitFor();
      assert.equal(await vp.getByRole('link', { name: 'New job' }).count(), 0);
      assert.equal(await vp.getByRole('button', { name: 'Run now' }).count(), 0);
      await vp.getByRole('link', { name: 'Mine now' }).click();
      await vp.getByRole('heading', { name: 'Mine now' }).waitFor();
      for (const name of ['Edit', 'Delete', 'Clone', 'Run now', 'Pause']) {
        assert.equal(await vp.getByRole('button', { name, exact: true }).or(vp.getByRole('link', { name, exact: true })).count(), 0, `${name} hidden`);
      }
      await shoot(vp, 'job-viewer');
      const statuses = await vp.evaluate(async (id) => {
        const me = await (await fetch('/api/v1/session')).json();
        const h = { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token };
        const run = await fetch(`/api/v1/jobs/${id}/run`, { method: 'POST', headers: h, body: '{}' });
        const del = await fetch(`/api/v1/jobs/${id}`, { method: 'DELETE', headers: h });
        const create = await fetch('/api/v1/jobs', { method: 'POST', headers: h, body: JSON.stringify({ id: 'viewer-made', command: 'true', rules: [{ schedule: '@daily' }] }) });
        return [me.role, run.status, del.status, create.status];
      }, jobId);
      assert.deepEqual(statuses, ['viewer', 403, 403, 403]);
      await vp.goto(`${BASE}/ui/accounts`);
      await vp.getByText('This page is for admins only.').waitFor();
      await vp.goto(`${BASE}/ui/jobs/${jobId}/edit`);
      await vp.getByText('This page is for admins only.').waitFor();
      // Anyone signed in with a password can change it (the current one is asked for).
      await vp.locator('#whoami').click();
      const dlg = vp.getByRole('dialog');
      await dlg.getByLabel('Current password').fill('viewer-password-42');
      await dlg.getByLabel('New password').fill('viewer-password-43');
      await dlg.getByRole('button', { name: 'Set password' }).click();
      await vp.getByText('Password changed.').waitFor();
      const relogin = await fetch(`${BASE}/api/v1/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user: 'vera', password: 'viewer-password-43' }) });
      assert.equal(relogin.status, 200);
    } finally {
      await viewer.close();
    }
  });

  it('a group-scoped operator sees and operates only its group, and cannot edit', async () => {
    const otherId = uniqueId('ui-other');
    assert.equal((await api('POST', '/jobs', { id: otherId, group: 'other', command: ['true'], rules: [{ schedule: '@yearly' }] })).status, 201);
    const acc = await api('POST', '/accounts', { user: 'otto', password: 'operator-password-42', role: 'operator', groups: ['other'], permissions: { read_output: true, privileged_run_as: false } });
    assert.equal(acc.status, 201, JSON.stringify(acc.data));
    const op = await launch();
    try {
      const p = await op.page();
      await login(p, 'otto', 'operator-password-42');
      await p.locator('#stats-unavailable, .chart.per-day svg').first().waitFor();
      await p.goto(`${BASE}/ui/jobs`);
      await p.getByRole('link', { name: otherId }).waitFor();
      assert.equal(await p.getByRole('link', { name: 'Mine now' }).count(), 0, 'jobs of other groups are not listed');
      assert.equal(await p.getByRole('link', { name: 'New job' }).count(), 0);
      await p.getByRole('link', { name: otherId }).click();
      await p.getByRole('button', { name: 'Pause' }).waitFor();
      for (const name of ['Edit', 'Delete', 'Clone']) {
        assert.equal(await p.getByRole('button', { name, exact: true }).or(p.getByRole('link', { name, exact: true })).count(), 0, `${name} hidden`);
      }
      await shoot(p, 'job-operator');
      await p.getByRole('button', { name: 'Run now' }).click();
      await p.locator('#run-status', { hasText: 'success' }).waitFor(LONG_WAIT);
      const refused = await p.evaluate(async (id) => {
        const me = await (await fetch('/api/v1/session')).json();
        const r = await fetch(`/api/v1/jobs/${id}/run`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token }, body: '{}' });
        return r.status;
      }, jobId);
      assert.ok([403, 404].includes(refused), `run now of another group's job: ${refused}`);
    } finally {
      await op.close();
    }
  });

  it('shows a retry banner when the daemon cannot be reached, and recovers', async () => {
    await page.goto(`${BASE}/ui/jobs`);
    await page.locator('.jobs-table').waitFor();
    await admin.ctx.setOffline(true);
    try {
      await page.getByRole('link', { name: 'Runs', exact: true }).click();
      await page.locator('.banner.offline').waitFor();
      await page.locator('main .error').waitFor();
      await shoot(page, 'offline');
    } finally {
      await admin.ctx.setOffline(false);
    }
    await page.locator('.banner.offline').getByRole('button', { name: 'Retry now' }).click();
    await page.locator('.banner.offline').waitFor({ state: 'detached' });
    await page.getByRole('heading', { name: 'Runs' }).waitFor();
  });

  it('opens the navigation menu at phone width', async () => {
    await page.setViewportSize(PHONE);
    try {
      await page.goto(`${BASE}/ui/`);
      const nav = page.getByRole('navigation', { name: 'Main' });
      assert.equal(await nav.isVisible(), false);
      await page.getByRole('button', { name: 'Menu' }).click();
      await nav.getByRole('link', { name: 'Runs' }).waitFor();
      await page.locator('#whoami').waitFor();
      await page.screenshot({ path: join(SHOTS, 'menu-phone.png') });
      await nav.getByRole('link', { name: 'Runs' }).click();
      await page.getByRole('heading', { name: 'Runs' }).waitFor();
      assert.equal(await nav.isVisible(), false, 'the menu closes after choosing a page');
    } finally {
      await page.setViewportSize(LAPTOP);
    }
  });

  it('switches language and keeps the choice', async () => {
    await page.goto(`${BASE}/ui/`);
    await page.getByLabel('Language').selectOption('zh');
    await page.getByRole('heading', { name: '概览' }).waitFor();
    await page.getByRole('link', { name: '任务' }).waitFor();
    await page.reload();
    await page.getByRole('heading', { name: '概览' }).waitFor();
    await shoot(page, 'dashboard-zh');
    await page.goto(`${BASE}/ui/jobs/${jobId}/edit`);
    await page.locator('#preview-list li').first().waitFor();
    await shoot(page, 'editor-zh');
    await page.getByLabel('语言').selectOption('en');
    await page.getByRole('heading', { name: 'Edit job' }).waitFor();
  });

  it('sends an expired session back to the login page and returns after it', async () => {
    await page.goto(`${BASE}/ui/jobs`);
    await page.locator('.jobs-table').waitFor();
    await admin.ctx.clearCookies();
    await page.getByRole('link', { name: 'Nodes', exact: true }).click();
    await page.getByText('Your session ended. Please sign in again.').waitFor();
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill(initialPassword());
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Nodes' }).waitFor();
  });

  it('logs out', async () => {
    await page.goto(`${BASE}/ui/`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/ui\/login/);
    const me = await page.evaluate(async () => (await fetch('/api/v1/session')).status);
    assert.equal(me, 401);
  });
});
