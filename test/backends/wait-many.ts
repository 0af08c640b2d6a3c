/**
 * `wq wait ID...` on every backend (test/fixtures/backends.ts): every request
 * is waited for at once (a result is claimed as soon as it is there), outcomes
 * print in the order given, the exit code is the first non-zero one in that
 * order; a deadline or a signal acts on every request not yet collected.
 * `wq abort --all` aborts every request of one's own. Observed through `wq` only.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { spawnWqUntracked, wq } from '../fixtures/cli.js';
import { forEachBackend, type QueueUnderTest } from '../fixtures/backends.js';
import { closed, collect, openGate, sq, waitGate } from '../fixtures/gates.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { listensForStopSignals } from '../fixtures/processes.js';

const WAITING = ['requested', 'pending'];

interface RequestJson {
  id: string;
  state: string;
  aborting?: boolean;
}

/** Ids of requests enqueued (without waiting) for each command. */
async function enqueueAll(q: QueueUnderTest, commands: string[][]): Promise<string[]> {
  const ids: string[] = [];
  for (const command of commands) ids.push((await wq(['enqueue', ...q.flags, '--quiet', '--', ...command])).stdout.trim());
  return ids;
}

async function requests(t: Test, q: QueueUnderTest): Promise<Map<string, RequestJson>> {
  const r = await wq(['status', ...q.flags, '--json']);
  t.equal(r.code, 0, r.stderr);
  return new Map((JSON.parse(r.stdout) as { requests: RequestJson[] }).requests.map((req) => [req.id, req]));
}

forEachBackend('results print in the order given, each claimed as soon as it is there; the exit code is the first non-zero', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve(['--max-tasks', '3']);
  const gate = join(dir, 'gate');
  t.teardown(() => openGate(gate));
  const [first, second, third] = await enqueueAll(q, [
    ['sh', '-c', `${waitGate(gate)}; echo first`],
    ['sh', '-c', 'echo second; exit 3'],
    ['sh', '-c', 'echo third >&2; exit 5'],
  ]);
  const child = spawnWq(['wait', ...q.flags, first!, second!, third!]);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const ended = closed(child);
  await waitFor(async () => {
    const now = await requests(t, q);
    return !now.has(second!) && !now.has(third!);
  }, 'the two finished results to be claimed');
  t.equal((await requests(t, q)).get(first!)?.state, 'running', 'while the first still runs');
  t.equal(stdout.text() + stderr.text(), '', 'nothing printed before the first in order');
  openGate(gate);
  t.same(await ended, { code: 3, signal: null }, "the second's exit code: the first non-zero in the order given");
  t.equal(stdout.text(), 'first\nsecond\n');
  t.equal(stderr.text(), 'third\n');

  const [zero, seven] = await enqueueAll(q, [['true'], ['sh', '-c', 'exit 7']]);
  t.equal((await wq(['wait', ...q.flags, seven!, zero!])).code, 7);
  const [a, b] = await enqueueAll(q, [['true'], ['true']]);
  t.same(await wq(['wait', ...q.flags, a!, b!]), { code: 0, signal: null, stdout: '', stderr: '' }, 'all succeeded: 0');
  t.same([...(await requests(t, q)).keys()], [], 'every result claimed');
});

forEachBackend('--json: one object per line, in the order given; an unknown id is one of them (exit 4)', async (t, q) => {
  await q.serve();
  const [one, two] = await enqueueAll(q, [['echo', 'one'], ['echo', 'two']]);
  const unknown = '1700000000000000-000000000000';
  const r = await wq(['wait', ...q.flags, '--json', two!, unknown, one!]);
  t.equal(r.code, 4, 'the unknown id is the first non-zero');
  const lines = r.stdout.split('\n');
  t.equal(lines.pop(), '', 'ends in a newline');
  t.match(
    lines.map((line) => JSON.parse(line)),
    [
      { id: two, exitCode: 0, status: 'normal', stdout: 'two\n' },
      { id: unknown, exitCode: 4, status: 'unknown' },
      { id: one, exitCode: 0, status: 'normal', stdout: 'one\n' },
    ],
  );
  t.equal(lines.length, 3, 'one line each');
  t.same([...(await requests(t, q)).keys()], [], 'both results claimed');
});

forEachBackend('--timeout and signals act on every request not yet collected', async (t, q) => {
  const dir = realpathSync(t.testdir());
  // No server: nothing finishes.
  const [a, b] = await enqueueAll(q, [['touch', join(dir, 'a-ran')], ['touch', join(dir, 'b-ran')]]);
  const timedOut = await wq(['wait', ...q.flags, '--timeout', '0.2', a!, b!]);
  t.equal(timedOut.code, 124);
  const noServer = `wq: no server is running on ${q.where}; the requests not yet complete wait until \`wq serve\` starts\n`;
  t.equal(timedOut.stderr, noServer + [a, b].map((id) => `wq: timed out after 0.2 s (--timeout) waiting for ${id}; the request was aborted\n`).join(''));
  const afterTimeout = await requests(t, q);
  for (const id of [a!, b!]) t.ok(!afterTimeout.has(id) || afterTimeout.get(id)!.aborting === true, `${id}: aborted (gone, or marked aborting)`);

  const left: string[] = [];
  for (const detach of [false, true]) {
    const [c, d] = await enqueueAll(q, [['touch', join(dir, `c-ran-${detach}`)], ['touch', join(dir, `d-ran-${detach}`)]]);
    const child = spawnWqUntracked(['wait', ...q.flags, ...(detach ? ['--detach-on-signal'] : []), c!, d!]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stderr = collect(child.stderr);
    const ended = closed(child);
    await waitFor(() => listensForStopSignals(child.pid!), 'wq wait to listen for signals');
    child.kill('SIGTERM');
    t.same(await ended, { code: 143, signal: null });
    const now = await requests(t, q);
    if (detach) {
      t.match(stderr.text(), new RegExp(`^${escape(noServer)}${[c, d].map((id) => `wq: stopped waiting \\(SIGTERM\\); request ${id} was left in the \\w+: collect it with \`wq wait ${id}\`\\n`).join('')}$`));
      for (const id of [c!, d!]) t.ok(WAITING.includes(now.get(id)?.state ?? '') && now.get(id)?.aborting !== true, `--detach-on-signal: ${id} still waits, no abort filed`);
      left.push(c!, d!);
    } else {
      t.equal(stderr.text(), `${noServer}wq: aborted request ${c} (SIGTERM)\nwq: aborted request ${d} (SIGTERM)\n`);
      for (const id of [c!, d!]) t.ok(!now.has(id) || now.get(id)!.aborting === true, `${id}: aborted (gone, or marked aborting)`);
    }
  }

  await q.serve();
  t.same(await wq(['wait', ...q.flags, ...left]), { code: 0, signal: null, stdout: '', stderr: '' }, 'the detached ones run and are collected later');
  for (const name of ['c-ran-true', 'd-ran-true']) t.ok(existsSync(join(dir, name)), `${name}: ran`);
  await waitFor(async () => (await requests(t, q)).size === 0, 'the server to carry out the aborts');
  for (const name of ['a-ran', 'b-ran', 'c-ran-false', 'd-ran-false']) t.notOk(existsSync(join(dir, name)), `${name}: the aborted request never ran`);
});

forEachBackend('usage: an id given twice', async (t, q) => {
  const id = '1700000000000000-000000000000';
  const twice = await wq(['wait', ...q.flags, id, id]);
  t.equal(twice.code, 2);
  t.equal(twice.stderr, `wq: request ${id} is given twice\n`);
});

forEachBackend('abort --all: every waiting or running request of mine, oldest first; not a result already written', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve(['--max-tasks', '1']);
  const [finished] = await enqueueAll(q, [['echo', 'kept']]);
  await waitFor(async () => (await requests(t, q)).get(finished!)?.state === 'complete', 'the first result');
  const pidFile = join(dir, 'running.pid');
  const [running, ...queued] = await enqueueAll(q, [
    ['sh', '-c', `echo $$ > ${sq(pidFile)}; ${waitGate(join(dir, 'never'))}; touch ${sq(join(dir, 'running-finished'))}`],
    ['touch', join(dir, 'queued-ran-1')],
    ['touch', join(dir, 'queued-ran-2')],
  ]);
  await waitFor(() => existsSync(pidFile), 'the first to run');
  const waiter = spawnWq(['wait', ...q.flags, running!, ...queued]);
  t.teardown(() => void (waiter.exitCode === null && waiter.kill('SIGKILL')));
  const waited = closed(waiter);
  const r = await wq(['abort', ...q.flags, '--all']);
  t.same(r, { code: 0, signal: null, stdout: [running, ...queued].map((id) => `${id}\n`).join(''), stderr: '' }, 'the ids it aborted, oldest first');
  t.equal((await waited).code, 4, 'their waiter: in no state');
  await waitFor(async () => [...(await requests(t, q)).keys()].join() === finished, 'all three to be gone, only the result left');
  t.same(await wq(['wait', ...q.flags, finished!]), { code: 0, signal: null, stdout: 'kept\n', stderr: '' }, 'the result is left to claim');
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'echo', 'next']), { code: 0, signal: null, stdout: 'next\n', stderr: '' }, 'the line moves on');
  // Redis aborts one id after the other, several round trips each (src/redis/queue.ts abort()): the slot the running
  // one frees can start a queued one before its own abort is filed.
  for (const name of ['queued-ran-1', 'queued-ran-2']) t.notOk(existsSync(join(dir, name)), `${name}: never ran`);
  t.notOk(existsSync(join(dir, 'running-finished')), 'the running one was killed');
  t.same(await wq(['abort', ...q.flags, '--all']), { code: 0, signal: null, stdout: '', stderr: '' }, 'nothing left: exit 0, nothing printed');
  const both = await wq(['abort', ...q.flags, '--all', '1700000000000000-000000000000']);
  t.same({ code: both.code, stderr: both.stderr }, { code: 2, stderr: 'wq: give request ids or --all, not both\n' });
});

forEachBackend('abort of several ids: each is aborted; exit 4 and a message for each unknown one, none with --quiet', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve(['--max-tasks', '1']);
  const pidFile = join(dir, 'running.pid');
  const [running, queued] = await enqueueAll(q, [
    ['sh', '-c', `echo $$ > ${sq(pidFile)}; ${waitGate(join(dir, 'never'))}; touch ${sq(join(dir, 'running-finished'))}`],
    // Gated too: its abort is filed alongside the other's, so it may start in the slot the first frees.
    ['sh', '-c', `${waitGate(join(dir, 'never'))}; touch ${sq(join(dir, 'queued-finished'))}`],
  ]);
  await waitFor(() => existsSync(pidFile), 'the first to run');
  const unknown = '1700000000000000-000000000000';
  const r = await wq(['abort', ...q.flags, running!, unknown, queued!]);
  t.equal(r.code, 4, 'an unknown id: exit 4');
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`^wq: no request ${unknown} in the \\w+; the abort is kept for 10 minutes in case it is still being enqueued\\n$`));
  await waitFor(async () => (await requests(t, q)).size === 0, 'both requests to be aborted');
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'true']), { code: 0, signal: null, stdout: '', stderr: '' }, 'the line moves on');
  t.notOk(existsSync(join(dir, 'queued-finished')), 'the queued one never finished');
  t.notOk(existsSync(join(dir, 'running-finished')), 'the running one was killed');
  const quiet = await wq(['abort', ...q.flags, '--quiet', unknown, '1700000000000000-000000000001']);
  t.same({ code: quiet.code, stderr: quiet.stderr }, { code: 4, stderr: '' }, '--quiet: exit 4 without a message');
});

/** `text` as a literal in a RegExp. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
