/**
 * A waiting `wq` that is told to stop: SIGINT, SIGTERM and SIGHUP abort the
 * request it waits for (from the moment it is published), say so and exit
 * 128+N, or with --detach-on-signal leave it queued; a reader that goes away
 * (EPIPE) ends wq like a Unix filter: no stack trace, exit 141, the request
 * aborted as at Ctrl-C.
 */
import { watch, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { spawnWq, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { closed, collect, openGate, sq, waitGate, wq } from '../fixtures/gates.js';
import { isGone, readPid } from '../fixtures/processes.js';

const ID = /\d{16}-[0-9a-f]{12}/;
const EXIT_BY_SIGNAL = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;
const SIGNALS = Object.keys(EXIT_BY_SIGNAL) as Array<keyof typeof EXIT_BY_SIGNAL>;

/** Nothing left in the spool's request states. */
function emptied(spool: string): boolean {
  const s = spoolContents(spool);
  return [s.requested, s.pending, s.running, s.complete, s.aborting].every((names) => names.length === 0);
}

for (const signal of SIGNALS) {
  t.test(`${signal} while waiting: the running request is aborted, wq says so and exits ${EXIT_BY_SIGNAL[signal]}`, async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    await startCliServer(t, spool);
    const pidFile = join(dir, 'task.pid');
    // The task outlives no test: it stops once the test directory is gone.
    const child = spawnWq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', `echo $$ > ${sq(pidFile)}; while [ -d ${sq(dir)} ]; do sleep 0.05; done`]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const ended = closed(child);
    const pid = (await waitFor(() => readPid(pidFile), 'the task to run'))!;
    const [id] = spoolContents(spool).running;
    child.kill(signal);
    t.same(await ended, { code: EXIT_BY_SIGNAL[signal], signal: null }, `exit ${EXIT_BY_SIGNAL[signal]}, not killed by the signal`);
    t.equal(stderr.text(), `wq: aborted request ${id} (${signal})\n`);
    t.equal(stdout.text(), '');
    await waitFor(() => isGone(pid), 'the server to kill the task');
    await waitFor(() => emptied(spool), 'the request to be gone from the spool');
    t.pass('the task was killed and nothing is left in the spool');
  });
}

t.test('a signal the moment the request is published still aborts it: no window', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const paths = openSpool(spool); // no server: the request stays in requested/
  const ROUNDS = 12;
  for (let round = 0; round < ROUNDS; round++) {
    const signal = SIGNALS[round % SIGNALS.length]!;
    const child = spawnWq(['enqueue', '--spool', spool, '--quiet', '--wait', '--', 'true']);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const ended = closed(child);
    let published: string | undefined;
    const watcher = watch(paths.dirs.requested, (_event, name) => {
      if (published !== undefined || name === null || !ID.test(name)) return;
      published = name;
      child.kill(signal); // as soon as the request is visible
    });
    const { code } = await ended;
    watcher.close();
    t.equal(code, EXIT_BY_SIGNAL[signal], `round ${round}: ${signal} right after publishing: exit ${EXIT_BY_SIGNAL[signal]}`);
    const queued = spoolContents(spool).requested.filter((name) => ID.test(name));
    t.same(spoolContents(spool).aborting.sort(), queued.sort(), `round ${round}: every published request has an abort filed`);
  }
});

t.test('--detach-on-signal: the request stays queued, its id goes to stderr (even with --quiet), wq wait collects it later', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  openSpool(spool);
  const child = spawnWq(['enqueue', '--spool', spool, '--quiet', '--wait', '--detach-on-signal', '--', 'echo', 'later']);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stderr = collect(child.stderr);
  const ended = closed(child);
  const id = await waitFor(() => spoolContents(spool).requested[0], 'the request to be queued');
  child.kill('SIGTERM');
  t.same(await ended, { code: 143, signal: null });
  t.equal(stderr.text(), `wq: stopped waiting (SIGTERM); request ${id} was left in the spool: collect it with \`wq wait ${id}\`\n`, 'the id, even with --quiet');
  t.same(spoolContents(spool).aborting, [], 'no abort was filed');

  const loud = spawnWq(['enqueue', '--spool', spool, '--wait', '--detach-on-signal', '--', 'echo', 'later']);
  t.teardown(() => void (loud.exitCode === null && loud.kill('SIGKILL')));
  const loudErr = collect(loud.stderr);
  const loudEnded = closed(loud);
  const second = (await waitFor(() => spoolContents(spool).requested.find((name) => name !== id), 'the second request to be queued'))!;
  await waitFor(() => loudErr.text().includes('no server'), 'the no-server warning');
  loud.kill('SIGHUP');
  t.equal((await loudEnded).code, 129);
  t.match(loudErr.text(), `wq: stopped waiting (SIGHUP); request ${second} was left in the spool: collect it with \`wq wait ${second}\`\n`);

  await startCliServer(t, spool);
  for (const queued of [id, second]) t.same(await wq(['wait', '--spool', spool, queued]), { code: 0, signal: null, stdout: 'later\n', stderr: '' }, 'collected later');
  t.ok(emptied(spool));
});

t.test('a closed stdout or stderr: no stack trace, exit 141', async (t) => {
  t.test('wq --help', async (t) => {
    const child = spawnWq(['--help']);
    child.stdout!.destroy(); // the reader is gone before wq writes anything
    const stderr = collect(child.stderr);
    const { code } = await closed(child);
    t.equal(code, 141);
    t.equal(stderr.text(), '', 'nothing on stderr');
  });

  t.test('wq enqueue --wait: a result that cannot be printed is never lost: it stays in the spool, stderr says so', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    await startCliServer(t, spool);
    const child = spawnWq(['enqueue', '--spool', spool, '--wait', '--', 'seq', '1', '100000']);
    child.stdout!.destroy();
    const stderr = collect(child.stderr);
    const { code } = await closed(child);
    t.equal(code, 141);
    const [id] = spoolContents(spool).complete;
    t.equal(stderr.text(), `wq: the output could not be written (its reader went away): the result stays in the spool: wq wait ${id}\n`);
    const later = await wq(['wait', '--spool', spool, id!]);
    t.equal(later.code, 0, 'a later wq wait collects it');
    t.equal(later.stdout.split('\n').length, 100001, 'whole');
    t.ok(emptied(spool), 'and then it is claimed');
  });

  for (const detach of [false, true]) {
    t.test(`wq wait${detach ? ' --detach-on-signal' : ''} whose stdout closed before the task ended: the result stays in the spool`, async (t) => {
      const dir = realpathSync(t.testdir());
      const spool = join(dir, 'spool');
      await startCliServer(t, spool);
      const gate = join(dir, 'go');
      const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', 'sh', '-c', `${waitGate(gate)}; echo out`])).stdout.trim();
      const child = spawnWq(['wait', '--spool', spool, ...(detach ? ['--detach-on-signal'] : []), id]);
      t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
      child.stdout!.destroy(); // like `… | true`: nothing tells wq until it writes
      const stderr = collect(child.stderr);
      const ended = closed(child);
      await waitFor(() => spoolContents(spool).running.includes(id), 'the task to run');
      openGate(gate);
      t.equal((await ended).code, 141);
      t.equal(stderr.text(), `wq: the output could not be written (its reader went away): the result stays in the spool: wq wait ${id}\n`);
      t.same(spoolContents(spool).complete, [id], 'not claimed');
      t.same(await wq(['wait', '--spool', spool, id]), { code: 0, signal: null, stdout: 'out\n', stderr: '' }, 'a later wq wait collects it');
    });
  }

  t.test('wq enqueue --wait --follow: the reader went away mid-stream, so the request is aborted', async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    await startCliServer(t, spool);
    const pidFile = join(dir, 'task.pid');
    const child = spawnWq(['enqueue', '--spool', spool, '--wait', '--follow', '--', 'sh', '-c', `echo $$ > ${sq(pidFile)}; while [ -d ${sq(dir)} ]; do echo tick; sleep 0.05; done`]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stderr = collect(child.stderr);
    const ended = closed(child);
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    child.stdout!.destroy(); // like `| head -1`
    const pid = readPid(pidFile)!;
    const [id] = spoolContents(spool).running;
    const { code } = await ended;
    t.equal(code, 141);
    t.equal(stderr.text(), `wq: aborted request ${id} (SIGPIPE)\n`, 'one line, no stack trace');
    await waitFor(() => isGone(pid), 'the server to kill the task');
    await waitFor(() => emptied(spool), 'the request to be gone from the spool');
    t.pass('aborted, nothing left');
  });

  t.test('wq enqueue --wait --follow whose stderr reader went away: the request is aborted too', async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    await startCliServer(t, spool);
    const pidFile = join(dir, 'task.pid');
    const child = spawnWq(['enqueue', '--spool', spool, '--wait', '--follow', '--', 'sh', '-c', `echo $$ > ${sq(pidFile)}; while [ -d ${sq(dir)} ]; do echo tick >&2; sleep 0.05; done`]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stdout = collect(child.stdout);
    const ended = closed(child);
    await new Promise<void>((resolve) => child.stderr!.once('data', () => resolve()));
    child.stderr!.destroy(); // like `2>&1 | head -1`
    const pid = readPid(pidFile)!;
    t.equal((await ended).code, 141);
    t.equal(stdout.text(), '');
    await waitFor(() => isGone(pid), 'the server to kill the task');
    await waitFor(() => emptied(spool), 'the request to be gone from the spool');
    t.pass('aborted, nothing left');
  });
});
