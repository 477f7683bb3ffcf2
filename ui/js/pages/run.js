// One run: metadata, output, live output over SSE while it runs, kill.
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, seg } from '../api.js';
import { badge, dl, button, confirmDialog, toast } from '../widgets.js';
import { when, duration, bytes } from '../format.js';
import { can } from '../roles.js';

function outputText(r) {
  if (!r.truncated) return `${r.output_head || ''}${r.output_tail || ''}`;
  const omitted = Math.max(0, r.output_bytes - (r.output_head || '').length - (r.output_tail || '').length);
  return `${r.output_head}\n... [${omitted} bytes omitted] ...\n${r.output_tail}`;
}

export async function render(ctx) {
  const id = ctx.params.id;
  let rec = await get(`/runs/${seg(id)}`);
  // The job's zone for the hover text of the times (the job may be gone).
  const job = await get(`/jobs/${seg(rec.job_id)}`).catch(() => null);
  const zone = job && job.job.rules[0] && job.job.rules[0].timezone;
  const meta = h('div', {});
  const actions = h('div', { class: 'actions' });
  const out = h('pre', { class: 'output', id: 'output', tabindex: '0', 'aria-label': t('run.output') });
  const live = h('p', { class: 'live', 'aria-live': 'polite' });
  const readable = can.readOutput(ctx.me);

  const status = h('p', { class: 'run-status', id: 'run-status' });
  const draw = () => {
    replace(status, badge(rec.status), rec.reason ? ` ${rec.reason}` : '', rec.duration_ms !== null && rec.duration_ms !== undefined ? ` · ${duration(rec.duration_ms)}` : '');
    replace(meta, dl([
      [t('jobs.job'), h('a', { href: `/ui/jobs/${seg(rec.job_id)}` }, rec.job_name || rec.job_id)],
      [t('run.job_revision'), String(rec.job_revision)],
      [t('run.run_id'), h('code', {}, `${rec.run_id}#${rec.attempt}`)],
      [t('runs.trigger'), t(`trigger.${rec.trigger}`)],
      [t('runs.node'), `${rec.node_id}${rec.hostname ? ` (${rec.hostname})` : ''}`],
      [t('runs.scheduled'), when(rec.scheduled_at, zone)],
      [t('runs.started'), when(rec.started_at, zone)],
      [t('run.finished'), when(rec.finished_at, zone)],
      [t('runs.duration'), duration(rec.duration_ms)],
      [t('runs.exit'), rec.exit_code !== null && rec.exit_code !== undefined ? String(rec.exit_code) : rec.signal ? `signal ${rec.signal}` : '—'],
      [t('run.argv'), h('code', { class: 'wrap' }, JSON.stringify(rec.argv || []))],
      [t('run.user'), rec.run_as || '—'],
      [t('run.env_keys'), (rec.env_keys || []).join(', ') || '—'],
      [t('run.fence'), rec.fence !== null && rec.fence !== undefined ? String(rec.fence) : '—'],
      [t('run.usage'), [
        `${t('run.cpu')} ${rec.cpu_ms !== null && rec.cpu_ms !== undefined ? duration(rec.cpu_ms) : '—'}`,
        `${t('run.memory')} ${bytes(rec.peak_memory)}`,
        `${t('run.io')} ${bytes(rec.io_bytes)}`,
        `${t('run.pids')} ${rec.peak_pids ?? '—'}`,
        rec.oom_kills ? `OOM ${rec.oom_kills}` : null].filter(Boolean).join(' · ')],
      rec.status === 'running' ? null : [t('run.output_size'), `${bytes(rec.output_bytes)}${rec.truncated ? ` (${t('run.truncated')})` : ''}`],
    ]));
    replace(actions, rec.status === 'running' && can.operate(ctx.me)
      ? button(t('run.kill'), async () => {
        if (!(await confirmDialog(t('run.kill_title'), t('run.kill_text'), { okLabel: t('run.kill'), danger: true }))) return;
        try {
          await post(`/runs/${seg(`${rec.run_id}#${rec.attempt}`)}/kill`);
          toast(t('run.kill_sent'));
        } catch (e) {
          toast(e.message, 'bad');
        }
      }, { cls: 'danger', id: 'kill-run' })
      : null);
  };
  draw();

  if (!readable) {
    out.textContent = t('run.no_output_permission');
  } else if (rec.status === 'running') {
    live.textContent = t('run.live');
    const es = new EventSource(`/api/v1/runs/${seg(`${rec.run_id}#${rec.attempt}`)}/stream`);
    ctx.onCleanup(() => es.close());
    // The stream starts from the beginning of the output, also after a reconnect.
    es.addEventListener('open', () => {
      out.textContent = '';
      live.textContent = t('run.live');
    });
    es.addEventListener('output', (ev) => {
      let chunk = '';
      try {
        chunk = JSON.parse(ev.data);
      } catch {
        chunk = ev.data;
      }
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(chunk);
      if (atEnd) out.scrollTop = out.scrollHeight;
    });
    es.addEventListener('end', (ev) => {
      es.close();
      try {
        rec = JSON.parse(ev.data);
      } catch {
        /* keep the old one */
      }
      live.textContent = t('run.ended', { status: t(`status.${rec.status}`) });
      draw();
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) live.textContent = t('run.stream_closed');
      else live.textContent = t('run.reconnecting');
    });
  } else {
    out.textContent = outputText(rec) || t('run.no_output');
  }

  return h('div', { class: 'run-page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('p', { class: 'crumbs' }, h('a', { href: '/ui/runs' }, t('runs.title')), ' / ', h('a', { href: `/ui/jobs/${seg(rec.job_id)}` }, rec.job_id)),
        h('h1', {}, t('run.title', { job: rec.job_name || rec.job_id })), status),
      actions),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('run.output')), live), h('div', { class: 'card-body' }, out)),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('run.details'))), h('div', { class: 'card-body' }, meta)));
}
