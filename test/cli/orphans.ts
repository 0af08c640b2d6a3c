/**
 * Tasks that outlive their server: a `wq serve` killed with SIGKILL (or a
 * second SIGTERM) must not leave its task working beside the re-run the next
 * server starts. Each task here leaves a grandchild in its process group (a
 * background subshell). A server's task watchdog kills the whole group when
 * the server dies; the tests of recovery kill the watchdog with the server (as
 * the OOM killer might), so that only the next server's recovery can kill it.
 * The tests look at the processes themselves in /proc, not at what wq says
 * about them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spoolContents, startCliServer, waitFor, WQ } from '../fixtures/helpers.js';
import { exited, wq } from '../fixtures/cli.js';
import { collect, sq } from '../fixtures/gates.js';
import { killQuietly, killWithWatchdog, readLines, watchdogsOf } from '../fixtures/processes.js';

/**
 * The live (not zombie) processes of a process group, from /proc: an
 * orphan's SIGKILLed members may stay zombies for good when PID 1 does not
 * reap, and a zombie does no work.
 */
function liveMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z' && Number(fields[2]) === pgid) out.push(Number(name));
  }
  return out;
}

/**
 * sh code for a long task: appends `start <pid>` to `runs`, then works in a
 * background subshell (a grandchild, in the task's process group) for up to a
 * minute, or until the test directory goes; `end <pid>` if it finishes.
 */
function longTask(runs: string, dir: string): string {
  return `echo "start $$" >> ${sq(runs)}; (i=0; while [ $i -lt 1200 ] && [ -d ${sq(dir)} ]; do sleep 0.05; i=$((i+1)); done) & wait; echo "end $$" >> ${sq(runs)}`;
}

const startsIn = (runs: string): number[] => readLines(runs).filter((l) => l.startsWith('start ')).map((l) => Number(l.slice(6)));

/** Kills, at teardown, every process group a task of this test recorded. */
function cleanUpGroups(t: Test, runs: string): void {
  t.teardown(() => {
    for (const pid of startsIn(runs)) killQuietly(-pid);
  });
}

async function enqueue(spool: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', ...argv]);
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

t.test('kill -9 of the server alone: its watchdog kills each task\'s whole process group at once, the background worker too', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const runs = join(dir, 'runs');
  cleanUpGroups(t, runs);
  const server = await startCliServer(t, spool, ['--max-tasks', '2']);
  await enqueue(spool, ['sh', '-c', longTask(runs, dir)]);
  await enqueue(spool, ['sh', '-c', longTask(runs, dir)]);
  await waitFor(() => startsIn(runs).length === 2, 'both tasks to start');
  const groups = startsIn(runs);
  await waitFor(() => groups.every((g) => liveMembers(g).length >= 2), 'both tasks to start their background workers');
  t.equal(watchdogsOf(server.pid!).length, 1, 'one watchdog for the server\'s tasks');
  server.kill('SIGKILL');
  await exited(server);
  await waitFor(() => groups.every((g) => liveMembers(g).length === 0), 'nothing of either task group to be left, with no next server');
  t.equal(readLines(runs).filter((l) => l.startsWith('end ')).length, 0, 'neither task finished its work');
});

t.test('kill -9 of the server: the task it left is killed before its re-run starts, never beside it (--max-tasks 1)', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const runs = join(dir, 'runs');
  cleanUpGroups(t, runs);
  const server = await startCliServer(t, spool, ['--max-tasks', '1']);
  await enqueue(spool, ['sh', '-c', longTask(runs, dir)]);
  await waitFor(() => startsIn(runs).length === 1, 'the task to start');
  const [first] = startsIn(runs) as [number];
  await waitFor(() => liveMembers(first).length >= 2, 'the task to start its background worker');
  killWithWatchdog(server); // and its task watchdog: the task survives, for the next server to find
  await exited(server);

  await startCliServer(t, spool, ['--max-tasks', '1']);
  await waitFor(() => startsIn(runs).length === 2, 'the next server to run the request again', 30_000);
  t.strictSame(liveMembers(first), [], 'by the time the re-run started, nothing of the first run was left alive');
  t.equal(startsIn(runs).length, 2, 'run twice in all: the first run and one re-run');
});

t.test('--fail-interrupted: the task the killed server left is killed before its client hears it was not run again', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const runs = join(dir, 'runs');
  cleanUpGroups(t, runs);
  const server = await startCliServer(t, spool);
  const id = await enqueue(spool, ['sh', '-c', longTask(runs, dir)]);
  await waitFor(() => startsIn(runs).length === 1, 'the task to start');
  const [first] = startsIn(runs) as [number];
  await waitFor(() => liveMembers(first).length >= 2, 'the task to start its background worker');
  killWithWatchdog(server); // and its task watchdog: the task survives, for the next server to find
  await exited(server);

  await startCliServer(t, spool, ['--fail-interrupted']);
  const r = await wq(['wait', '--spool', spool, id]);
  t.equal(r.code, 1);
  t.match(r.stderr, /server restarted/);
  t.strictSame(liveMembers(first), [], 'when the client heard "not run again", the task was no longer running');
  t.equal(startsIn(runs).length, 1, 'it was not run again');
});

t.test('--handler: a busy worker of a killed server is killed before its request runs again', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const runs = join(dir, 'runs');
  // The handler records its worker's pid (its process group), then works for up to a minute
  // without yielding to the event loop: a busy worker, deaf to its IPC channel closing.
  writeFileSync(
    join(dir, 'handler.mjs'),
    `import { appendFileSync, existsSync } from 'node:fs';
export default function () {
  appendFileSync(${JSON.stringify(runs)}, 'start ' + process.pid + '\\n');
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 1200 && existsSync(${JSON.stringify(dir)}); i++) Atomics.wait(pause, 0, 0, 50);
  appendFileSync(${JSON.stringify(runs)}, 'end ' + process.pid + '\\n');
  return 'done';
}
`,
  );
  cleanUpGroups(t, runs);
  const server = await startCliServer(t, spool, ['--handler', join(dir, 'handler.mjs')]);
  const enqueued = await wq(['enqueue', '--spool', spool, '--quiet', '--data', '{}']);
  t.equal(enqueued.code, 0, enqueued.stderr);
  await waitFor(() => startsIn(runs).length === 1, 'the handler to start');
  const [first] = startsIn(runs) as [number];
  server.kill('SIGKILL');
  await exited(server);

  await startCliServer(t, spool, ['--handler', join(dir, 'handler.mjs')]);
  await waitFor(() => startsIn(runs).length === 2, 'the next server to run the request again', 30_000);
  t.strictSame(liveMembers(first), [], 'by the time the re-run started, the old worker was gone');
  t.notOk(readLines(runs).includes(`end ${first}`), 'the old worker never finished its task');
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`a second ${signal} kills the running tasks' process groups before the server exits`, async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    const runs = join(dir, 'runs');
    cleanUpGroups(t, runs);
    const server = await startCliServer(t, spool, ['--max-tasks', '2', '--grace', '60']);
    const log = collect(server.stderr);
    const ids = [await enqueue(spool, ['sh', '-c', longTask(runs, dir)]), await enqueue(spool, ['sh', '-c', longTask(runs, dir)])];
    await waitFor(() => startsIn(runs).length === 2, 'both tasks to start');
    const groups = startsIn(runs);
    await waitFor(() => groups.every((g) => liveMembers(g).length >= 2), 'both tasks to start their background workers');
    server.kill(signal);
    await waitFor(() => log.text().includes('signal received'), 'the graceful stop to begin');
    server.kill(signal);
    await exited(server);
    // SIGKILLed before the server exited; a moment later nothing of them is left (a generous deadline, not a sleep).
    await waitFor(() => groups.every((g) => liveMembers(g).length === 0), 'nothing of the tasks\' process groups to be left working', 10_000);
    for (const g of groups) t.strictSame(liveMembers(g), [], `nothing of task group ${g} is left working`);
    t.strictSame(spoolContents(spool).running.filter((n) => !n.includes('.')), ids.sort(), 'both requests stay in running/ for the next server');
  });
}

const isRoot = process.getuid?.() === 0;

t.test('an orphan the next server may not kill (EPERM) keeps its slot: nothing starts and its request is not re-run until it is gone', { skip: isRoot ? false : 'needs root to run the two servers as two users' }, async (t) => {
  // Outside the test tree, which another user may not be able to traverse.
  const base = mkdtempSync(join(tmpdir(), 'wq-orphan-eperm-'));
  chmodSync(base, 0o755);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const spool = join(base, 'spool');
  const runs = join(base, 'runs');
  const stop = join(base, 'stop');
  writeFileSync(runs, '');
  chmodSync(runs, 0o666);
  cleanUpGroups(t, runs);
  const user = 4301;
  // Without tap's hooks, which would write their own files as that user.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(NODE_|_?TAP)/i.test(key))), HOME: '/nonexistent' };
  // A task whose background work runs until the test creates `stop`.
  const task = `echo "start $$" >> ${sq(runs)}; (while [ ! -e ${sq(stop)} ] && [ -d ${sq(base)} ]; do sleep 0.05; done) & wait; echo "end $$" >> ${sq(runs)}`;

  // The first server runs as root, so its orphan is root's.
  const first = await startCliServer(t, spool, ['--max-tasks', '1']);
  const orphaned = await enqueue(spool, ['sh', '-c', task]);
  await waitFor(() => startsIn(runs).length === 1, 'the task to start');
  const [orphan] = startsIn(runs) as [number];
  await waitFor(() => liveMembers(orphan).length >= 2, 'the task to start its background worker');
  killWithWatchdog(first); // and its task watchdog: the task survives, for the next server to find
  await exited(first);

  // The next server runs as another user, who may not signal root's processes.
  spawnSync('chown', ['-R', `${user}:${user}`, spool]);
  const asUser = (args: string[]) => spawnSync(process.execPath, [WQ, ...args], { uid: user, gid: user, env, encoding: 'utf8' });
  const next = asUser(['enqueue', '--spool', spool, '--quiet', '--', 'sh', '-c', `echo next >> ${sq(runs)}`]);
  t.equal(next.status, 0, next.stderr);
  const nextId = next.stdout.trim();
  const second = spawn(process.execPath, [WQ, 'serve', '--spool', spool, '--max-tasks', '1'], { uid: user, gid: user, env, stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => void second.kill('SIGKILL'));
  const log = collect(second.stderr);
  await waitFor(() => /may not kill the task the previous server left running \(EPERM\)/.test(log.text()) || second.exitCode !== null, 'the server to find the orphan it may not kill', 30_000);
  t.equal(second.exitCode, null, 'the server serves', { log: log.text() });
  // In pending/ only once the tick that admitted it has declined to start it.
  await waitFor(() => spoolContents(spool).pending.includes(nextId), 'the new request to be queued');
  t.strictSame(spoolContents(spool).running, [orphaned, `${orphaned}.proc`], 'the orphan\'s request stays in running/, with its record');
  t.strictSame(readLines(runs), [`start ${orphan}`], 'nothing else started: the orphan holds the only slot');

  killQuietly(-orphan); // its owner ends it
  await waitFor(() => startsIn(runs).length === 2, 'the orphan\'s request to run again once it is gone', 30_000);
  t.strictSame(liveMembers(orphan), [], 'the re-run started only after the orphan was gone');
  writeFileSync(stop, '');
  await waitFor(() => readLines(runs).includes('next'), 'the new request to run after it', 30_000);
  t.strictSame(readLines(runs).filter((l) => !l.startsWith('end ')).map((l) => l.split(' ')[0]), ['start', 'start', 'next'], 'in FIFO order: the interrupted request, then the new one');
});
