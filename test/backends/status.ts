/**
 * `wq status` on every backend (test/fixtures/backends.ts): `--json` and the
 * request rows of the text view, `wq status ID` in every state, unknown and
 * malformed ids, `--all`, the pid of a running command, and what counts as an
 * abort pending. The text view's header lines differ by backend (a spool has
 * `spool:`/`server:`, Redis `queue:`/`servers:`) and are left to the
 * backend's own tests; so is the "of the spool" wording of an unknown id.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { existsSync, realpathSync } from 'node:fs';
import type { Test } from 'tap';
import { exited, wq } from '../fixtures/cli.js';
import { forEachBackend, type QueueUnderTest } from '../fixtures/backends.js';
import { openGate, sq, waitGate } from '../fixtures/gates.js';
import { waitFor } from '../fixtures/helpers.js';
import { readLines, readPid } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;
/** A waiting request is `requested` or `pending` (a queue on Redis has no `requested` stage). */
const WAITING = ['requested', 'pending'];

interface RequestJson {
  id: string;
  state: string;
  position?: number;
  runningSeconds?: number;
  pid?: number;
  waitingSeconds?: number;
  aborting?: boolean;
  heldBy?: Record<string, unknown>;
}

interface StatusJson {
  server: { pid: number; host: string; startedAt: number; uptimeSeconds: number; maxTasks: number | null; alive: boolean } | null;
  counts: Record<string, number>;
  requests: RequestJson[];
}

async function statusJson(t: Test, q: QueueUnderTest): Promise<StatusJson>;
async function statusJson(t: Test, q: QueueUnderTest, id: string): Promise<RequestJson>;
async function statusJson(t: Test, q: QueueUnderTest, ...args: string[]): Promise<unknown> {
  const r = await wq(['status', ...q.flags, '--json', ...args]);
  t.equal(r.code, 0, 'wq status --json exits 0');
  t.equal(r.stderr, '', 'and says nothing on stderr');
  return JSON.parse(r.stdout);
}

async function enqueue(q: QueueUnderTest, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', ...q.flags, '--quiet', '--', ...argv]);
  if (r.code !== 0 || !ID.test(r.stdout.trim())) throw new Error(`wq enqueue failed (${r.code}): ${r.stdout} ${r.stderr}`);
  return r.stdout.trim();
}

forEachBackend('no server: the waiting requests in line order, in JSON and in the text rows; an aborted one never runs', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const a = await enqueue(q, ['touch', join(dir, 'a-ran')]);
  const b = await enqueue(q, ['true']);

  const json = await statusJson(t, q);
  t.equal(json.server, null, 'server is null when none runs');
  t.equal(json.requests.length, 2);
  t.same(json.requests.map(({ id, position }) => ({ id, position })), [
    { id: a, position: 1 },
    { id: b, position: 2 },
  ]);
  t.ok(json.requests.every((r) => WAITING.includes(r.state)), 'both wait');
  t.equal(json.counts.requested! + json.counts.pending!, 2);
  t.match(json.counts, { running: 0, complete: 0, aborting: 0 });

  const text = await wq(['status', ...q.flags]);
  t.equal(text.code, 0);
  t.equal(text.stderr, '');
  t.match(text.stdout, 'queue:   2 waiting, 0 running, 0 results to claim\n');
  t.match(text.stdout, `waiting: no server is running\n  ${a} queued #1 of 2\n  ${b} queued #2 of 2\n`);
  t.notMatch(text.stdout, 'running:');

  const one = await wq(['status', ...q.flags, b]);
  t.strictSame(one, { code: 0, signal: null, stdout: `${b} queued #2 of 2: no server is running\n`, stderr: '' });
  t.match(await statusJson(t, q, a), { id: a, position: 1 });

  // With no server, a spool files the abort (the request stays listed, marked aborting, until a server
  // carries it out); Redis takes a waiting request out of the line at once. Either way it is no longer
  // an ordinary waiting request, every abort listed is counted, and it never runs.
  t.equal((await wq(['abort', ...q.flags, a])).code, 0);
  const after = await statusJson(t, q);
  const listed = after.requests.find((r) => r.id === a);
  if (listed !== undefined) {
    t.equal(listed.aborting, true, 'still listed: marked aborting');
    t.equal((await wq(['status', ...q.flags, a])).stdout, `${a} queued #1 of 2 (aborting): no server is running\n`, 'and the text says so');
    t.match((await wq(['status', ...q.flags])).stdout, ', 1 abort pending\n');
  } else {
    t.equal((await wq(['status', ...q.flags, a])).code, 4, 'or gone: an unknown id');
    t.notMatch((await wq(['status', ...q.flags])).stdout, 'abort pending');
  }
  t.notOk(after.requests.find((r) => r.id === b)?.aborting, 'not on the request it does not name');
  t.equal(after.counts.aborting, after.requests.filter((r) => r.aborting).length, 'counts.aborting counts the aborts listed');
  t.equal(after.counts.requested! + after.counts.pending!, after.requests.length, 'and the waiting count what is listed');
  await q.serve();
  t.equal((await wq(['wait', ...q.flags, b])).code, 0, 'the other one runs');
  t.notOk(existsSync(join(dir, 'a-ran')), 'the aborted one never ran');
  t.same((await statusJson(t, q)).requests, [], 'nothing is left');
});

forEachBackend('a served queue: pending, running (with the command pid), complete, then unknown', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const gate = join(dir, 'go');
  const pidFile = join(dir, 'running.pid');
  t.teardown(() => openGate(gate));
  await q.serve(['--max-tasks', '1']);

  const running = await enqueue(q, ['sh', '-c', `echo $$ > ${sq(pidFile)}; ${waitGate(gate)}; echo finished`]);
  const commandPid = await waitFor(() => readPid(pidFile), 'the command to write its pid');
  const pending = await enqueue(q, ['echo', 'second']);
  await waitFor(async () => WAITING.includes((await statusJson(t, q, pending)).state), 'the second to be queued');

  const json = await statusJson(t, q);
  t.match(json.server, { host: hostname(), maxTasks: 1, alive: true }, 'the server field names the serving host');
  t.type(json.server?.pid, 'number');
  t.type(json.server?.uptimeSeconds, 'number');
  t.strictSame(json.requests.map(({ id }) => id), [pending, running], 'waiting first, then running');
  const runningEntry = json.requests.find((r) => r.id === running)!;
  t.equal(runningEntry.state, 'running');
  t.equal(runningEntry.pid, commandPid, "the running command's own pid");
  t.type(runningEntry.runningSeconds, 'number');
  const pendingEntry = json.requests.find((r) => r.id === pending)!;
  t.ok(WAITING.includes(pendingEntry.state), 'the second waits');
  t.equal(pendingEntry.position, 1);
  t.match(json.counts, { running: 1, complete: 0, aborting: 0 });

  const text = await wq(['status', ...q.flags]);
  t.equal(text.code, 0);
  t.match(text.stdout, 'queue:   1 waiting, 1 running, 0 results to claim\n');
  t.match(text.stdout, new RegExp(`running:\\n  ${running} running for \\d+s \\(pid ${commandPid}\\)\\n`));
  t.match(text.stdout, new RegExp(`waiting:.*\\n  ${pending} queued #1 of 1\\n`));
  t.match((await wq(['status', ...q.flags, pending])).stdout, new RegExp(`^${pending} queued #1 of 1(: .*)?\\n$`));
  const runningOne = await wq(['status', ...q.flags, running]);
  t.equal(runningOne.code, 0);
  t.match(runningOne.stdout, new RegExp(`^${running} running for \\d+s \\(pid ${commandPid}\\)\\n$`));
  t.match(await statusJson(t, q, running), { id: running, state: 'running', pid: commandPid });

  openGate(gate);
  await waitFor(async () => (await statusJson(t, q)).counts.complete === 2, 'both results');
  const completeOne = await wq(['status', ...q.flags, running]);
  t.equal(completeOne.code, 0);
  t.match(completeOne.stdout, new RegExp(`^${running} complete; result waiting to be claimed for \\d+s\\n$`));
  const completeJson = await statusJson(t, q, running);
  t.match(completeJson, { id: running, state: 'complete' });
  t.type(completeJson.waitingSeconds, 'number');
  t.notOk('pid' in completeJson, 'a finished command has no pid');
  const all = await wq(['status', ...q.flags]);
  t.match(all.stdout, 'queue:   0 waiting, 0 running, 2 results to claim\n');
  t.match(all.stdout, /results:\n {2}\S+ complete; .*\n {2}\S+ complete; /);

  const claimed = await wq(['wait', ...q.flags, running]);
  t.same([claimed.code, claimed.stdout], [0, 'finished\n']);
  const unknown = await wq(['status', ...q.flags, running]);
  t.equal(unknown.code, 4, 'a claimed result is an unknown id: exit 4');
  t.equal(unknown.stdout, '');
  t.match(unknown.stderr, new RegExp(`^wq: unknown request id ${running}: it is in no state`));
  const unknownJson = await wq(['status', ...q.flags, '--json', running]);
  t.equal(unknownJson.code, 4);
  t.strictSame(JSON.parse(unknownJson.stdout), { id: running, state: 'unknown' });
  t.same((await statusJson(t, q)).requests.map((r) => r.id), [pending], 'the other result is still there to claim');
});

forEachBackend('counts: 1 result, singular; an abort of an id in no state is not counted; seconds to the millisecond', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  const b = await enqueue(q, ['true']);
  const unknownId = '1763830000000000-0123456789ab';
  t.equal((await wq(['abort', ...q.flags, '--quiet', unknownId])).code, 4, 'an abort for an id in no state');
  t.match((await wq(['status', ...q.flags])).stdout, 'queue:   1 waiting, 0 running, 0 results to claim\n', 'it is not counted');
  t.equal((await statusJson(t, q)).counts.aborting, 0);

  await q.serve(['--max-tasks', '1']);
  await waitFor(async () => (await statusJson(t, q)).requests.some((r) => r.id === b && r.state === 'complete'), "b's result");
  const running = await enqueue(q, ['sh', '-c', waitGate(gate)]);
  await waitFor(async () => (await statusJson(t, q)).requests.some((r) => r.id === running && r.state === 'running'), 'it to run');
  const json = await statusJson(t, q);
  t.same(json.requests.map((r) => r.id), [running, b], 'running first, then the result');
  t.match(json.counts, { requested: 0, pending: 0, running: 1, complete: 1, aborting: 0 });
  t.match((await wq(['status', ...q.flags])).stdout, 'queue:   0 waiting, 1 running, 1 result to claim\n', 'one result, singular; no abort pending');
  const seconds = [json.server!.uptimeSeconds, json.requests.find((r) => r.id === running)!.runningSeconds!, json.requests.find((r) => r.id === b)!.waitingSeconds!];
  for (const s of seconds) t.match(String(s), /^\d+(\.\d{1,3})?$/, `${s}: to the millisecond`);
  openGate(gate);
  t.equal((await wq(['wait', ...q.flags, running])).code, 0);
});

forEachBackend('ids: never enqueued is unknown (4), malformed is a usage error (2)', async (t, q) => {
  await enqueue(q, ['true']);
  const never = await wq(['status', ...q.flags, '1700000000000000-0123456789ab']);
  t.equal(never.code, 4);
  t.match(never.stderr, 'unknown request id 1700000000000000-0123456789ab');
  for (const bad of ['nope', '1700000000000000-0123456789AB', '../../etc/passwd', '1700000000000000-0123456789ab.stdout']) {
    const r = await wq(['status', ...q.flags, bad]);
    t.equal(r.code, 2, `${JSON.stringify(bad)}: exit 2`);
    t.match(r.stderr, `"${bad}" is not a request id`);
    t.equal(r.stdout, '');
  }
});

forEachBackend('--all lists every waiting request; the text view stops at 20 without it; --json lists all', async (t, q) => {
  const ids: string[] = [];
  for (let i = 0; i < 23; i++) ids.push(await enqueue(q, ['true']));

  const short = await wq(['status', ...q.flags]);
  t.equal(short.code, 0);
  const rowsOf = (stdout: string): string[] => stdout.split('\n').filter((l) => / queued #\d+ of 23$/.test(l));
  t.strictSame(rowsOf(short.stdout), ids.slice(0, 20).map((id, i) => `  ${id} queued #${i + 1} of 23`), 'the first 20, in line order');
  t.match(short.stdout, '  … and 3 more (--all lists them)\n');

  for (const flag of ['--all', '-a']) {
    const full = await wq(['status', ...q.flags, flag]);
    t.equal(full.code, 0);
    t.strictSame(rowsOf(full.stdout), ids.map((id, i) => `  ${id} queued #${i + 1} of 23`), `${flag}: all 23`);
    t.notMatch(full.stdout, 'more (--all');
  }
  const json = await statusJson(t, q);
  t.same(json.requests.map((r) => r.id), ids, '--json always lists everything, in line order');
});

forEachBackend('what holds the line: a full capacity is named, in JSON and text', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  await q.serve(['--max-tasks', '1']);
  const running = await enqueue(q, ['sh', '-c', `touch ${sq(join(dir, 'started'))}; ${waitGate(gate)}`]);
  await waitFor(() => existsSync(join(dir, 'started')), 'the first to run');
  const pending = await enqueue(q, ['true']);
  // Redis publishes no hold but "no server" (src/redis/queue.ts): a full capacity is not named there.
  const held = await waitFor(async () => (await statusJson(t, q, pending)).heldBy, 'the server to say what holds the line', q.backend === 'redis' ? 3000 : 10_000).catch(() => undefined);
  t.same(held, { reason: 'capacity', maxTasks: 1 }, 'heldBy: capacity');
  t.match((await wq(['status', ...q.flags])).stdout, `waiting: capacity full (1 of 1 running)\n  ${pending} queued #1 of 1\n`, 'the text view');
  t.equal((await wq(['status', ...q.flags, pending])).stdout, `${pending} queued #1 of 1: capacity full (1 of 1 running)\n`, 'wq status ID');
  openGate(gate);
  t.equal((await wq(['wait', ...q.flags, running, pending])).code, 0);
});

forEachBackend('a request re-run after a server restart shows the pid of the re-run', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const gate = join(dir, 'go');
  const runs = join(dir, 'runs');
  t.teardown(() => openGate(gate));
  const first = await q.serve(['--grace', '0']);
  const id = await enqueue(q, ['sh', '-c', `echo run $$; echo $$ >> ${sq(runs)}; ${waitGate(gate)}; echo finished`]);
  await waitFor(() => readLines(runs).length === 1, 'the first run to start');
  first.child.kill('SIGTERM');
  t.equal((await exited(first.child)).code, 0, 'the first server exits 0 at SIGTERM');
  await q.serve();
  await waitFor(() => readLines(runs).length === 2, 'the next server to run the request again');
  const pids = readLines(runs).map(Number);
  const json = await waitFor(async () => {
    const r = await statusJson(t, q, id);
    return r.pid === pids[1] ? r : undefined;
  }, 'status to show the re-run');
  t.match(json, { id, state: 'running', pid: pids[1] }, 'the running command is the re-run, not the terminated first run');
  t.match((await wq(['status', ...q.flags, id])).stdout, `(pid ${pids[1]})`);
  openGate(gate);
  const done = await wq(['wait', ...q.flags, id]);
  t.equal(done.stdout, `run ${pids[1]}\nfinished\n`, "the result is the re-run's");
});
