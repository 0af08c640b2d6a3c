/**
 * Whether a task's process has exited, judged from /proc/<pid>/stat: the
 * decision on plain data, and the real reader with the /proc probe injected.
 */
import t from 'tap';
import { exitedFromStat, hasExited, procIsMounted } from '../../src/task-manager/process-group.js';

/** Above the kernel's largest pid_max (2^22): no process ever has it. */
const NO_SUCH_PID = 2 ** 22 + 1;

t.test('exitedFromStat: a missing stat file means exited only where /proc is mounted', async (t) => {
  t.equal(exitedFromStat({ kind: 'missing' }, true), true, 'with /proc: collected meanwhile');
  t.equal(exitedFromStat({ kind: 'missing' }, false), false, 'without /proc every file is missing: judged running, so its deadline still fires');
  t.equal(exitedFromStat({ kind: 'unreadable' }, true), false, 'unreadable: cannot tell, judged running');
  t.equal(exitedFromStat({ kind: 'stat', text: '42 (sleep) S 1 42 42 0' }, true), false, 'sleeping: running');
  t.equal(exitedFromStat({ kind: 'stat', text: '42 (a) b) Z 1 42 42 0' }, true), true, 'a zombie, its name holding ") "');
  t.equal(exitedFromStat({ kind: 'stat', text: '42 (Z) R 1 42 42 0' }, true), false, 'a running process named Z');
});

t.test('hasExited: a pid with no /proc entry has exited only if /proc itself is readable', async (t) => {
  t.equal(hasExited(NO_SUCH_PID, () => false), false, 'no /proc (hidden, or a sandbox): not taken for exited');
  t.equal(hasExited(NO_SUCH_PID, () => true), true, 'with /proc: gone, so exited');
  t.equal(hasExited(process.pid, () => false), false, 'this process is running');
  t.equal(procIsMounted(), true, 'this machine has /proc');
});
