// What the signed-in role may do (the API's role matrix; the API decides,
// the UI only hides what would be refused).

function inScope(me, group) {
  return !me.groups || me.groups.length === 0 || group === undefined || me.groups.includes(group);
}

export const can = {
  admin: (me) => !!me && me.role === 'admin',
  /** Create, edit, clone, delete jobs. */
  edit: (me) => !!me && me.role === 'admin',
  /** Run now, pause/resume a job, kill a run (for jobs in `group`). */
  operate: (me, group) => !!me && (me.role === 'admin' || me.role === 'operator') && inScope(me, group),
  readOutput: (me) => !!me && (me.role === 'admin' || !!(me.permissions && me.permissions.read_output)),
};
