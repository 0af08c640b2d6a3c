/**
 * GroupWatchdog, with real processes: an owner process (the built module, as
 * `wq serve` loads it) registers real process groups, each a shell with a
 * background child; the test kills the owner the way a server dies (SIGKILL)
 * and looks in /proc at what is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import t, { type Test } from 'tap';
import { ROOT, waitFor } from '../fixtures/helpers.js';
import { isGone, killQuietly, watchdogsOf } from '../fixtures/processes.js';
import { groupMembers } from '../../src/task-manager/process-table.js';

const MODULE = pathToFileURL(join(ROOT, 'dist', 'task-manager', 'watchdog.js')).href;

/** The live (not zombie) members of a process group. */
function liveMembers(pgid: number): number[] {
  return groupMembers(pgid)
    .filter((p) => !p.zombie)
    .map((p) => p.pid);
}

/** A process group of two: a shell that waits for its background sleep. Killed at teardown. */
async function group(t: Test): Promise<number> {
  const child = spawn('sh', ['-c', 'sleep 60 & wait'], { detached: true, stdio: 'ignore' });
  child.unref();
  const pgid = child.pid!;
  t.teardown(() => killQuietly(-pgid));
  await waitFor(() => liveMembers(pgid).length === 2, 'the group to have its two members');
  return pgid;
}

/**
 * An owner process that runs `script` (with `w`, a GroupWatchdog, and `line(text)`,
 * which prints a line for the test) and then waits for lines on stdin, each
 * JavaScript to run. Resolves once it printed `ready`.
 */
async function owner(t: Test, script: string): Promise<{ child: ChildProcess; lines: AsyncIterator<string>; run(code: string): Promise<string> }> {
  const code = `
    import { GroupWatchdog } from ${JSON.stringify(MODULE)};
    import { createInterface } from 'node:readline';
    const w = new GroupWatchdog();
    const line = (text) => process.stdout.write(text + '\\n');
    ${script}
    createInterface({ input: process.stdin }).on('line', async (code) => line(String(await eval(code))));
    line('ready');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => killQuietly(child.pid!));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  t.equal((await lines.next()).value, 'ready');
  return {
    child,
    lines,
    async run(js: string) {
      child.stdin!.write(`${js}\n`);
      return String((await lines.next()).value);
    },
  };
}

t.test('the owner killed with SIGKILL: every registered group dies, background children too; a released group is left alone', async (t) => {
  const [a, b, c] = [await group(t), await group(t), await group(t)];
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), w.watch(${b}), w.watch(${c}), w.release(${b}), w.pid`);
  const [dog] = watchdogsOf(o.child.pid!);
  t.ok(dog, 'one watchdog runs, a child of the owner');
  t.strictSame(liveMembers(dog!), [dog], 'in its own process group');
  o.child.kill('SIGKILL');
  await waitFor(() => liveMembers(a).length === 0 && liveMembers(c).length === 0, 'the registered groups to die with their owner');
  t.equal(liveMembers(b).length, 2, 'the released group lives on');
  await waitFor(() => isGone(dog!), 'the watchdog to exit once its work is done');
});

t.test('an owner that exits on its own without close() takes its groups with it; the watchdog does not keep it alive', async (t) => {
  const a = await group(t);
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), process.stdin.destroy(), 'watching'`);
  await waitFor(() => o.child.exitCode !== null, 'the owner to exit: nothing it has left keeps it');
  await waitFor(() => liveMembers(a).length === 0, 'the group to die with it');
});

t.test('close(): the watchdog goes and kills nothing; later registrations are ignored', async (t) => {
  const a = await group(t);
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), 'ok'`);
  const [dog] = watchdogsOf(o.child.pid!);
  t.ok(dog);
  await o.run(`w.close(), w.watch(${a}), String(w.pid)`);
  await waitFor(() => isGone(dog!), 'the watchdog to exit');
  o.child.kill('SIGKILL');
  await new Promise((resolve) => o.child.once('exit', resolve));
  t.equal(liveMembers(a).length, 2, 'the group lives on');
  t.strictSame(watchdogsOf(o.child.pid!), [], 'no new watchdog was started');
});

t.test('a watchdog that was killed is replaced at the next registration and told every group still registered', async (t) => {
  const [a, b] = [await group(t), await group(t)];
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), 'ok'`);
  const [first] = watchdogsOf(o.child.pid!);
  killQuietly(first!);
  await waitFor(() => isGone(first!), 'the first watchdog to die');
  t.equal(liveMembers(a).length, 2, 'its death kills nothing: only the end of its input does');
  await waitFor(async () => (await o.run(`w.watch(${b}), String(w.pid)`)) !== String(first), 'a new watchdog');
  const [second] = watchdogsOf(o.child.pid!);
  t.ok(second && second !== first, 'a second watchdog runs');
  o.child.kill('SIGKILL');
  await waitFor(() => liveMembers(a).length === 0 && liveMembers(b).length === 0, 'both groups to die, the one registered before the first watchdog died too');
});

t.test('a watchdog that was killed is replaced by itself (about a second later) while groups are registered, with no new task', async (t) => {
  const a = await group(t);
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), 'ok'`);
  const [first] = watchdogsOf(o.child.pid!);
  killQuietly(first!);
  await waitFor(() => watchdogsOf(o.child.pid!).some((pid) => pid !== first), 'a new watchdog, with nothing asked of the owner');
  o.child.kill('SIGKILL');
  await waitFor(() => liveMembers(a).length === 0, 'the group to die: the new watchdog was told of it');
});

t.test('many tasks: 2,000 groups registered and released, one left; the owner dies: only that one is killed, at once', async (t) => {
  const a = await group(t);
  const o = await owner(t, '');
  // Pids that are no process's (above pid_max's usual range) stand for groups that came and went.
  await o.run(`(() => { for (let i = 0; i < 2000; i++) { w.watch(4000000 + i); } w.watch(${a}); for (let i = 0; i < 2000; i++) w.release(4000000 + i); return 'ok'; })()`);
  o.child.kill('SIGKILL');
  await waitFor(() => liveMembers(a).length === 0, 'the group to die', 5_000);
});

t.test('signals meant for the owner\'s group or terminal (SIGINT, SIGTERM, SIGHUP) leave the watchdog to do its work', async (t) => {
  const a = await group(t);
  const o = await owner(t, '');
  await o.run(`w.watch(${a}), 'ok'`);
  const [dog] = watchdogsOf(o.child.pid!);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.kill(dog!, signal);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.notOk(isGone(dog!), 'still there');
  o.child.kill('SIGKILL');
  await waitFor(() => liveMembers(a).length === 0, 'the group to die with the owner');
});
