/**
 * A waiting `wq` told to stop, on every backend (test/fixtures/backends.ts):
 * SIGINT, SIGTERM and SIGHUP abort the request it waits for (from the moment
 * it is published), say so and exit 128+N, or with --detach-on-signal leave it
 * queued; a reader that goes away (EPIPE) ends wq with exit 141 and the result
 * left to collect. Observed through `wq` and files the tasks write only.
 * (`--follow` is not on Redis yet: its EPIPE cases stay in test/cli/signals.ts.)
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { spawnWqUntracked, wq } from '../fixtures/cli.js';
import { forEachBackend, requests } from '../fixtures/backends.js';
import { closed, collect, openGate, sq, waitGate } from '../fixtures/gates.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { isGone, listensForStopSignals, readPid } from '../fixtures/processes.js';

const EXIT_BY_SIGNAL = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;
const SIGNALS = Object.keys(EXIT_BY_SIGNAL) as Array<keyof typeof EXIT_BY_SIGNAL>;
const WAITING = ['requested', 'pending'];


for (const signal of SIGNALS) {
  forEachBackend(`${signal} while waiting: the running request is aborted, wq says so and exits ${EXIT_BY_SIGNAL[signal]}`, async (t, q) => {
    const dir = realpathSync(t.testdir());
    await q.serve();
    const pidFile = join(dir, 'task.pid');
    // The task outlives no test: it stops once the test directory is gone.
    const child = spawnWqUntracked(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', `echo $$ > ${sq(pidFile)}; while [ -d ${sq(dir)} ]; do sleep 0.05; done`]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const ended = closed(child);
    const pid = (await waitFor(() => readPid(pidFile), 'the task to run'))!;
    await waitFor(() => listensForStopSignals(child.pid!), 'wq to listen for signals');
    const listed = await requests(t, q);
    t.same(listed.map((r) => r.state), ['running'], 'one request, running');
    const id = listed[0]!.id;
    child.kill(signal);
    t.same(await ended, { code: EXIT_BY_SIGNAL[signal], signal: null }, `exit ${EXIT_BY_SIGNAL[signal]}, not killed by the signal`);
    t.equal(stderr.text(), `wq: aborted request ${id} (${signal})\n`);
    t.equal(stdout.text(), '');
    await waitFor(() => isGone(pid), 'the server to kill the task');
    await waitFor(async () => (await requests(t, q)).length === 0, 'the request to be gone');
    t.equal((await wq(['wait', ...q.flags, id])).code, 4, 'nothing is left of it: in no state');
  });
}

forEachBackend('a signal as soon as wq listens, or as soon as the request is listed, still aborts it: it never runs', async (t, q) => {
  const dir = realpathSync(t.testdir());
  // No server: a published request stays queued until one starts. A first one, aborted by `wq abort`, makes the queue.
  const seed = await wq(['enqueue', ...q.flags, '--quiet', '--', 'touch', join(dir, 'seed-ran')]);
  t.equal((await wq(['abort', ...q.flags, seed.stdout.trim()])).code, 0);
  const ROUNDS = 8;
  for (let round = 0; round < ROUNDS; round++) {
    const signal = SIGNALS[round % SIGNALS.length]!;
    const before = new Set((await requests(t, q)).map((r) => r.id));
    const child = spawnWqUntracked(['enqueue', ...q.flags, '--quiet', '--wait', '--', 'touch', join(dir, `ran-${round}`)]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const ended = closed(child);
    if (round % 2 === 0) {
      await waitFor(() => listensForStopSignals(child.pid!), 'wq to listen for signals');
    } else {
      await waitFor(async () => (await requests(t, q)).some((r) => !before.has(r.id)), 'the request to be listed');
    }
    child.kill(signal);
    t.equal((await ended).code, EXIT_BY_SIGNAL[signal], `round ${round}: ${signal}: exit ${EXIT_BY_SIGNAL[signal]}`);
    const listed = await requests(t, q);
    t.ok(
      listed.every((r) => r.aborting === true),
      `round ${round}: every request still listed has its abort filed`,
    );
  }
  await q.serve();
  await waitFor(async () => (await requests(t, q)).length === 0, 'the server to carry out every abort');
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'echo', 'after']), { code: 0, signal: null, stdout: 'after\n', stderr: '' }, 'the line moves past them');
  for (let round = 0; round < ROUNDS; round++) t.notOk(existsSync(join(dir, `ran-${round}`)), `round ${round}: the request never ran`);
  t.notOk(existsSync(join(dir, 'seed-ran')), 'nor the one aborted by wq abort');
});

forEachBackend('--detach-on-signal: the request stays queued, its id goes to stderr (even with --quiet), wq wait collects it later', async (t, q) => {
  // No server: the request stays queued.
  const child = spawnWqUntracked(['enqueue', ...q.flags, '--quiet', '--wait', '--detach-on-signal', '--', 'echo', 'later']);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stderr = collect(child.stderr);
  const ended = closed(child);
  const id = (await waitFor(async () => (await requests(t, q))[0]?.id, 'the request to be queued'))!;
  await waitFor(() => listensForStopSignals(child.pid!), 'wq to listen for signals');
  child.kill('SIGTERM');
  t.same(await ended, { code: 143, signal: null });
  t.match(stderr.text(), new RegExp(`^wq: stopped waiting \\(SIGTERM\\); request ${id} was left in the \\w+: collect it with \`wq wait ${id}\`\\n$`), 'the id, even with --quiet');

  const loud = spawnWqUntracked(['enqueue', ...q.flags, '--wait', '--detach-on-signal', '--', 'echo', 'later']);
  t.teardown(() => void (loud.exitCode === null && loud.kill('SIGKILL')));
  const loudErr = collect(loud.stderr);
  const loudEnded = closed(loud);
  const second = (await waitFor(async () => (await requests(t, q)).find((r) => r.id !== id)?.id, 'the second request to be queued'))!;
  await waitFor(() => loudErr.text().includes('no server'), 'the no-server warning');
  await waitFor(() => listensForStopSignals(loud.pid!), 'wq to listen for signals');
  loud.kill('SIGHUP');
  t.equal((await loudEnded).code, 129);
  t.match(loudErr.text(), new RegExp(`^wq: no server is running on .*\\nwq: stopped waiting \\(SIGHUP\\); request ${second} was left in the \\w+: collect it with \`wq wait ${second}\`\\n$`));
  const listed = await requests(t, q);
  t.same(listed.map((r) => r.id), [id, second], 'both still queued, in order');
  t.ok(listed.every((r) => WAITING.includes(r.state) && r.aborting !== true), 'waiting, no abort filed');

  await q.serve();
  for (const queued of [id, second]) t.same(await wq(['wait', ...q.flags, queued]), { code: 0, signal: null, stdout: 'later\n', stderr: '' }, 'collected later');
  t.same(await requests(t, q), [], 'nothing left');
});

forEachBackend('wq enqueue --wait whose stdout closed: exit 141, no stack trace, the result stays to collect', async (t, q) => {
  await q.serve();
  const child = spawnWq(['enqueue', ...q.flags, '--wait', '--', 'seq', '1', '100000']);
  child.stdout!.destroy(); // the reader is gone before wq writes anything
  const stderr = collect(child.stderr);
  const { code } = await closed(child);
  t.equal(code, 141);
  const listed = await requests(t, q);
  t.same(listed.map((r) => r.state), ['complete'], 'the result is there, unclaimed');
  const id = listed[0]!.id;
  t.match(stderr.text(), new RegExp(`^wq: the output could not be written \\(its reader went away\\): the result stays in the \\w+: wq wait ${id}\\n$`));
  const later = await wq(['wait', ...q.flags, id]);
  t.equal(later.code, 0, 'a later wq wait collects it');
  t.equal(later.stdout.split('\n').length, 100001, 'whole');
  t.same(await requests(t, q), [], 'and then it is claimed');
});

for (const detach of [false, true]) {
  forEachBackend(`wq wait${detach ? ' --detach-on-signal' : ''} whose stdout closed before the task ended: exit 141, the result stays`, async (t, q) => {
    const dir = realpathSync(t.testdir());
    await q.serve();
    const gate = join(dir, 'go');
    t.teardown(() => openGate(gate));
    const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'sh', '-c', `${waitGate(gate)}; echo out`])).stdout.trim();
    const child = spawnWq(['wait', ...q.flags, ...(detach ? ['--detach-on-signal'] : []), id]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    child.stdout!.destroy(); // like `… | true`: nothing tells wq until it writes
    const stderr = collect(child.stderr);
    const ended = closed(child);
    await waitFor(async () => (await requests(t, q)).some((r) => r.id === id && r.state === 'running'), 'the task to run');
    openGate(gate);
    t.equal((await ended).code, 141);
    t.match(stderr.text(), new RegExp(`^wq: the output could not be written \\(its reader went away\\): the result stays in the \\w+: wq wait ${id}\\n$`));
    t.same((await requests(t, q)).map((r) => [r.id, r.state]), [[id, 'complete']], 'not claimed');
    t.same(await wq(['wait', ...q.flags, id]), { code: 0, signal: null, stdout: 'out\n', stderr: '' }, 'a later wq wait collects it');
  });
}
