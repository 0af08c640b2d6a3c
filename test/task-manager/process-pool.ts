/**
 * ProcessPoolTaskManager for real: handler modules written into a temp dir,
 * real child processes, results through a real WorkQueueServer and client.
 * Handlers record what they see (loads, starts, pids, aborts) in files next to
 * themselves; the tests read those records.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { TaskFailedError, UnknownRequestError } from '../../src/errors.js';
import { HandlerLoadError, ProcessPoolTaskManager, type ProcessPoolTaskManagerOptions } from '../../src/task-manager/process-pool.js';
import { readProcess } from '../../src/task-manager/process-table.js';
import { rejectionOf, spoolContents, startServer, waitFor } from '../fixtures/helpers.js';
import { concurrencyOf, isGone, killQuietly, readLines } from '../fixtures/processes.js';

/** Waits never last forever: a task that hangs fails its test with a WorkQueueTimeoutError. */
const LIMIT = { timeoutMs: 20_000 };

/** Lines every handler module starts with: `here(name)` is a file next to the module. */
const PRELUDE = `
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
const here = (name) => fileURLToPath(new URL(name, import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
`;

interface Served {
  dir: string;
  spool: string;
  pool: ProcessPoolTaskManager;
  client: WorkQueueClient;
}

/** Writes `body` as handler.mjs in a fresh testdir and serves a spool with a pool running it. */
async function servePool(t: Test, body: string, options: Partial<ProcessPoolTaskManagerOptions> = {}): Promise<Served> {
  const dir = t.testdir({ 'handler.mjs': PRELUDE + body });
  const spool = join(dir, 'spool');
  const pool = new ProcessPoolTaskManager({ handler: join(dir, 'handler.mjs'), killGraceMs: 2000, ...options });
  t.teardown(() => pool.close());
  await pool.ready();
  startServer(t, pool, { spool });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  return { dir, spool, pool, client };
}


t.test('a request goes to the handler and its value comes back through the spool', async (t) => {
  const { client } = await servePool(
    t,
    `export default async function (request, { id, signal }) {
       return { echo: request, id, pid: process.pid, signalIsAbortSignal: signal instanceof AbortSignal, abortedAtStart: signal.aborted };
     }`,
  );
  const request = { a: 1, list: ['x', null, true], nested: { s: 'é✓' }, bytes: new Uint8Array([104, 105]) };
  const id = await client.enqueue(request);
  const value = (await client.wait(id, LIMIT)) as any;
  t.same(value.echo.a, 1);
  t.same(value.echo.list, ['x', null, true]);
  t.same(value.echo.nested, { s: 'é✓' });
  t.equal(Buffer.from(value.echo.bytes).toString(), 'hi', 'bytes survive both hops');
  t.equal(value.id, id, 'the handler gets the request id');
  t.equal(value.signalIsAbortSignal, true, 'the handler gets an AbortSignal');
  t.equal(value.abortedAtStart, false);
  t.not(value.pid, process.pid, 'it ran in another process');
});

t.test('the handler module is loaded once per child, not once per request', async (t) => {
  const { dir, client } = await servePool(
    t,
    `appendFileSync(here('loads'), process.pid + '\\n');
     export default async function () { await sleep(20); return process.pid; }`,
    { size: 2 },
  );
  const pids = (await Promise.all(Array.from({ length: 8 }, (_, n) => client.run({ n }, LIMIT)))) as number[];
  const loads = (await waitFor(() => {
    const lines = readLines(join(dir, 'loads'));
    return lines.length >= 2 ? lines : undefined;
  }, 'both children to load the handler'))!;
  t.equal(loads.length, 2, 'two loads for two children and eight requests');
  t.equal(new Set(loads).size, 2, 'each child loaded it once');
  for (const pid of new Set(pids)) t.ok(loads.includes(String(pid)), `pid ${pid} that ran a request loaded the module`);
});

t.test('startTask names the worker and its start time, read once per worker: what the server records in running/<id>.proc', async (t) => {
  const dir = t.testdir({ 'handler.mjs': 'export default () => new Promise(() => {});\n' });
  const pool = new ProcessPoolTaskManager({ handler: join(dir, 'handler.mjs') });
  t.teardown(() => pool.close());
  await pool.ready();
  const first = pool.startTask('1796672154069641-000000000001', {});
  t.ok(first, 'a process');
  t.equal(first!.startTicks, readProcess(first!.pid)!.startTicks, 'its start time, as /proc says');
  pool.terminateTask('1796672154069641-000000000001');
  await waitFor(() => pool.hasCapacity(), 'a fresh worker');
  const second = pool.startTask('1796672154069641-000000000002', {});
  t.not(second!.pid, first!.pid, 'the terminated worker was replaced');
  t.equal(second!.startTicks, readProcess(second!.pid)!.startTicks, "the new worker's own start time, not the old one's");
  pool.terminateTask('1796672154069641-000000000002');
});

t.test('size 2 runs two tasks at once and never three', async (t) => {
  const { dir, client } = await servePool(
    t,
    // Each task stays until three run at once (which must never happen) or for
    // 300 ms, so every task the pool runs beside it overlaps with it in the log.
    `appendFileSync(here('loads'), process.pid + '\\n');
     export default async function ({ n }) {
       const log = here('log');
       const running = () => readFileSync(log, 'utf8').split('\\n').reduce((r, l) => r + (l.startsWith('start ') ? 1 : l.startsWith('end ') ? -1 : 0), 0);
       appendFileSync(log, 'start ' + n + '\\n');
       const until = Date.now() + 300;
       while (running() < 3 && Date.now() < until) await sleep(5);
       appendFileSync(log, 'end ' + n + '\\n');
       return n;
     }`,
    { size: 2 },
  );
  await waitFor(() => readLines(join(dir, 'loads')).length >= 2, 'both children to load the handler');
  const ids: string[] = [];
  for (let n = 0; n < 6; n++) ids.push(await client.enqueue({ n }));
  const values = await Promise.all(ids.map((id) => client.wait(id, LIMIT)));
  t.same(values, [0, 1, 2, 3, 4, 5]);
  const { maxRunning, starts, ends } = concurrencyOf(readLines(join(dir, 'log')));
  t.equal(maxRunning, 2, 'two at once, never three');
  t.equal(starts.length, 6);
  t.equal(ends.length, 6);
});

t.test('a handler that throws fails its request with a TaskFailedError carrying its message and code', async (t) => {
  const { client } = await servePool(
    t,
    `export default async function (request) {
       if (request.kind === 'error') throw Object.assign(new RangeError('flash failed on dut1'), { code: 'E_FLASH' });
       if (request.kind === 'string') throw 'just a string';
       if (request.kind === 'function') return () => 1;
       return 'fine';
     }`,
  );
  const err = await rejectionOf(t, client.run({ kind: 'error' }, LIMIT));
  t.type(err, TaskFailedError);
  t.equal(err.code, 'E_FLASH');
  t.equal(err.remote.name, 'RangeError');
  t.equal(err.remote.message, 'flash failed on dut1');
  t.match(err.message, /RangeError: flash failed on dut1/);
  t.equal(err.cause.message, 'flash failed on dut1', 'the cause is rebuilt from the remote error');
  t.match(err.remote.stack, /flash failed on dut1/, 'the handler stack travels too');

  const thrownString = await rejectionOf(t, client.run({ kind: 'string' }, LIMIT));
  t.type(thrownString, TaskFailedError);
  t.equal(thrownString.remote.message, 'just a string');

  const unclonable = await rejectionOf(t, client.run({ kind: 'function' }, LIMIT));
  t.type(unclonable, TaskFailedError, 'a value that cannot be sent back fails just that request');

  t.equal(await client.run({ kind: 'ok' }, LIMIT), 'fine', 'the same child goes on serving');
});

t.test('a child that exits or is killed fails only its task, and is replaced', async (t) => {
  const { client, pool } = await servePool(
    t,
    `export default async function (request) {
       if (request.exit !== undefined) process.exit(request.exit);
       if (request.kill !== undefined) process.kill(process.pid, request.kill);
       return process.pid;
     }`,
  );
  const first = (await client.run({}, LIMIT)) as number;

  const exited = await rejectionOf(t, client.run({ exit: 3 }, LIMIT));
  t.type(exited, TaskFailedError);
  t.equal(exited.code, 'ERR_WORKER_CRASHED');
  t.match(exited.message, /exited with code 3/);
  t.match(exited.message, String(first), 'the message names the dead child');
  const second = (await client.run({}, LIMIT)) as number;
  t.not(second, first, 'a new child runs the next request');

  const killed = await rejectionOf(t, client.run({ kill: 'SIGKILL' }, LIMIT));
  t.type(killed, TaskFailedError);
  t.equal(killed.code, 'ERR_WORKER_CRASHED');
  t.match(killed.message, /killed by SIGKILL/);
  const third = (await client.run({}, LIMIT)) as number;
  t.not(third, second);
  t.equal(pool.crashes, 2);
});

const STUCK_HANDLER = `export default async function (request, { id, signal }) {
  if (request.quick) return process.pid;
  signal.addEventListener('abort', () => appendFileSync(here('aborted'), id + '\\n'));
  const grandchild = request.ignoreTerm
    ? spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 1; done'], { stdio: 'ignore' })
    : spawn('sleep', ['60'], { stdio: 'ignore' });
  writeFileSync(here('pids.tmp'), JSON.stringify({ id, child: process.pid, grandchild: grandchild.pid }));
  renameSync(here('pids.tmp'), here('pids'));
  await new Promise(() => {}); // until killed
}`;

/** Enqueues a stuck request, waits for it to record its pids, and kills them at teardown whatever happens. */
async function startStuck(t: Test, s: Served, request: object): Promise<{ id: string; recordedId: string; child: number; grandchild: number }> {
  const id = await s.client.enqueue(request);
  const pids = (await waitFor(() => {
    try {
      return JSON.parse(readFileSync(join(s.dir, 'pids'), 'utf8')) as { id: string; child: number; grandchild: number };
    } catch {
      return undefined;
    }
  }, 'the handler to record its pids'))!;
  t.teardown(() => {
    killQuietly(pids.grandchild);
    killQuietly(pids.child);
  });
  return { id, recordedId: pids.id, child: pids.child, grandchild: pids.grandchild };
}

t.test('aborting a running request kills the child and everything it started', async (t) => {
  const s = await servePool(t, STUCK_HANDLER, { killGraceMs: 2000 });
  const stuck = await startStuck(t, s, {});
  t.equal(stuck.recordedId, stuck.id, 'the handler got the request id');
  t.notOk(isGone(stuck.child) || isGone(stuck.grandchild), 'both are running before the abort');

  await s.client.abort(stuck.id);
  await waitFor(() => isGone(stuck.child), `handler child ${stuck.child} to be gone`);
  await waitFor(() => isGone(stuck.grandchild), `grandchild sleep ${stuck.grandchild} to be gone`);
  // SIGTERM comes first and the worker aborts the signal synchronously before it exits.
  t.same(readLines(join(s.dir, 'aborted')), [stuck.id], "the handler's signal was aborted");

  const pid = await s.client.run({ quick: true }, LIMIT);
  t.not(pid, stuck.child, 'a fresh child serves the next request');
  t.same(spoolContents(s.spool).running, [], 'nothing left running');
  t.notOk(spoolContents(s.spool).complete.includes(stuck.id), 'the aborted request has no result');
  const err = await rejectionOf(t, s.client.wait(stuck.id, LIMIT));
  t.type(err, UnknownRequestError, 'waiting for the aborted request reports it unknown');
});

t.test('a grandchild that ignores SIGTERM is killed once the child is gone', async (t) => {
  const s = await servePool(t, STUCK_HANDLER, { killGraceMs: 30_000 });
  const stuck = await startStuck(t, s, { ignoreTerm: true });
  await s.client.abort(stuck.id);
  await waitFor(() => isGone(stuck.child), `handler child ${stuck.child} to be gone`);
  // Well before killGraceMs: the sweep of the group when its leader exits does it.
  await waitFor(() => isGone(stuck.grandchild), `TERM-ignoring grandchild ${stuck.grandchild} to be gone`);
  t.ok(await s.client.run({ quick: true }, LIMIT), 'the next request runs');
});

t.test('a handler module that cannot be loaded makes ready() reject with HandlerLoadError', async (t) => {
  const dir = t.testdir({
    'syntax.mjs': 'export default function ( {',
    'no-default.mjs': 'export const handler = () => 1;\n',
    'throws.mjs': "throw new Error('no config file');\n",
  });
  // [module, what the message must say, children]: one case with two children, which both fail to load.
  const cases: Array<[string, RegExp, number]> = [
    ['syntax.mjs', /syntax\.mjs/, 2],
    ['no-default.mjs', /no default export/, 1],
    ['throws.mjs', /no config file/, 1],
    ['missing.mjs', /missing\.mjs/, 1],
  ];
  for (const [name, message, size] of cases) {
    const handler = join(dir, name);
    const pool = new ProcessPoolTaskManager({ handler, size });
    const err = await rejectionOf(t, pool.ready());
    t.type(err, HandlerLoadError, name);
    t.equal(err?.code, 'ERR_HANDLER_LOAD', name);
    t.match(err?.message, handler, `${name}: the message names the module`);
    t.match(err?.message, message, `${name}: the message says what is wrong`);
    await pool.close();
    t.notOk(pool.hasCapacity(), `${name}: no capacity after a load failure`);
  }
});
