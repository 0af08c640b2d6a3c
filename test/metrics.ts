/**
 * The server's metrics, read back through a real OpenTelemetry SDK with an
 * in-memory reader. ServerMetrics alone with a fake clock; then real servers,
 * clients and task managers on temp spools, with the server's clock faked so
 * every duration lands in a known histogram bucket.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../src/client.js';
import { TaskFailedError, WorkQueueTimeoutError } from '../src/errors.js';
import { DURATION_BUCKETS_S, INSTRUMENTS, METRIC_ATTRIBUTES as A, ServerMetrics, type MetricsStamps, type QueueSnapshot } from '../src/metrics.js';
import { InProcessTaskManager, type TaskContext } from '../src/task-manager/in-process.js';
import { ProcessPoolTaskManager } from '../src/task-manager/process-pool.js';
import { startServer, waitFor } from './fixtures/helpers.js';
import { RecordingLogger } from './fixtures/hostile.js';
import { testMetrics } from './fixtures/metric-reader.js';

const IDLE: QueueSnapshot = { pending: 0, running: 0, capacityUsage: 0, capacityLimit: 1, unclaimedResults: 0 };

t.test('the instrument table: unique OpenTelemetry-style names, seconds for durations, annotations for counts', async (t) => {
  const names = Object.values(INSTRUMENTS).map((spec) => spec.name);
  t.equal(new Set(names).size, names.length, 'names are unique');
  for (const spec of Object.values(INSTRUMENTS)) {
    t.match(spec.name, /^wq(\.[a-z][a-z_]*)+$/, `${spec.name}: lowercase, dot-namespaced under wq.`);
    t.notMatch(spec.name, /total$|_count$/, `${spec.name}: no Prometheus suffixes in the OpenTelemetry name`);
    if (spec.kind === 'histogram') t.equal(spec.unit, 's', `${spec.name} is in seconds`);
    else t.match(spec.unit, /^\{[a-z]+\}$/, `${spec.name} counts things, with a UCUM annotation`);
  }
  t.ok(DURATION_BUCKETS_S[0]! < 0.001 && DURATION_BUCKETS_S.at(-1)! >= 3600, 'buckets span sub-millisecond to hours');
  t.same([...DURATION_BUCKETS_S].sort((a, b) => a - b), DURATION_BUCKETS_S, 'buckets ascend');
});

t.test('ServerMetrics: durations from the injected clock, abort state from what it saw, ticks with error.type', async (t) => {
  const metrics = testMetrics(t);
  let clock = 1000;
  let snapshots = 0;
  const m = new ServerMetrics(metrics.meter, () => (snapshots++, { ...IDLE, pending: 2, running: 1, capacityUsage: 1, capacityLimit: Infinity, unclaimedResults: 3 }), () => clock);

  // The server keeps the stamps in its book entry; here, plain objects.
  const a: MetricsStamps = { waitingSince: m.received() };
  clock += 0.05; // 50 µs
  a.runningSince = m.started(a);
  clock += 7;
  m.finished('normal', a);

  const b: MetricsStamps = { waitingSince: m.received() };
  clock += 40;
  m.aborted('aborted', b); // while pending

  const c0: MetricsStamps = { waitingSince: m.received() };
  c0.runningSince = m.started(c0);
  clock += 90_000;
  m.aborted('timed_out', c0); // while running

  m.aborted('aborted'); // still in requested/: no stamps, no duration to measure

  m.received(); // d: vanished, so its stamp was dropped with its entry
  m.started({}); // so no wait is recorded for it

  m.tick();
  m.tick(Object.assign(new Error('disk full'), { code: 'ENOSPC' }));
  m.tick(new TypeError('bug'));
  m.killed('abort');
  m.watcherMissed('aborting', 2);
  m.watcherMissed('requested', 0);
  m.workerCrashed();

  const c = await metrics.collect();
  t.equal(c.value('received'), 4);
  t.same(c.histogram('waitDuration').buckets, { '0.0001': 2 }, 'a waited 50 µs, c 0 µs');
  t.same(c.histogram('runDuration').buckets, { '0.01': 1 }, 'a ran 7 ms; aborted ones record no run time');
  t.same(c.histogram('runDuration').boundaries, DURATION_BUCKETS_S, 'the bucket advice reached the SDK');
  t.same(c.histogram('abortDuration', { [A.state]: 'pending' }).buckets, { '0.05': 1 });
  t.same(c.histogram('abortDuration', { [A.state]: 'running' }).buckets, { '120': 1 });
  t.equal(c.histogram('abortDuration').count, 2, 'nothing for the request that was never admitted');
  t.equal(c.value('finished', { [A.status]: 'normal' }), 1);
  t.equal(c.value('finished', { [A.status]: 'aborted' }), 2);
  t.equal(c.value('finished', { [A.status]: 'timed_out' }), 1);
  t.equal(c.value('ticks'), 3);
  t.equal(c.value('ticks', { [A.errorType]: 'ENOSPC' }), 1);
  t.equal(c.value('ticks', { [A.errorType]: 'TypeError' }), 1);
  t.equal(c.value('tasksKilled', { [A.killReason]: 'abort' }), 1);
  t.equal(c.value('watcherMissed', { [A.directory]: 'aborting' }), 2);
  t.equal(c.value('watcherMissed', { [A.directory]: 'requested' }), 0);
  t.equal(c.points('finished').length, 6, 'every status has a series from the start, zero until used');
  t.equal(c.value('finished', { [A.status]: 'rejected' }), 0);
  t.equal(c.points('tasksKilled').length, 3);
  t.equal(c.value('workerCrashes'), 1);
  t.equal(c.value('requests', { [A.state]: 'pending' }), 2);
  t.equal(c.value('requests', { [A.state]: 'running' }), 1);
  t.equal(c.value('capacityUsage'), 1);
  t.same(c.points('capacityLimit'), [], 'an unbounded manager reports no limit');
  t.equal(c.value('unclaimedResults'), 3);

  m.close();
  const before = snapshots;
  await metrics.collect();
  t.equal(snapshots, before, 'a closed ServerMetrics is no longer observed');
});

t.test('with the global no-op Meter (no SDK installed) nothing is timed or tracked', async (t) => {
  let clockReads = 0;
  const m = new ServerMetrics(undefined, () => IDLE, () => ++clockReads);
  for (let i = 0; i < 3; i++) {
    const stamps: MetricsStamps = { waitingSince: m.received() };
    stamps.runningSince = m.started(stamps);
    m.finished('normal', stamps);
  }
  m.aborted('aborted', { waitingSince: m.queued() });
  m.tick(new Error('x'));
  m.close();
  t.equal(clockReads, 0);
});

/** A promise with its settle functions outside. */
function deferred<T = unknown>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An in-process handler whose tasks finish when the test says so. */
function scriptedHandler() {
  const gates = new Map<string, ReturnType<typeof deferred>>();
  const started: string[] = [];
  const aborted: string[] = [];
  const handler = (request: { name: string }, { signal }: TaskContext): Promise<unknown> => {
    const gate = deferred();
    gates.set(request.name, gate);
    started.push(request.name);
    signal.addEventListener('abort', () => {
      aborted.push(request.name);
      gate.reject(signal.reason);
    });
    return gate.promise;
  };
  return { handler, gates, started, aborted };
}

t.test('a scripted run: 3 normal, 1 failed, 1 aborted while pending, 1 aborted while running', async (t) => {
  const metrics = testMetrics(t);
  const spool = join(t.testdir(), 'spool');
  const T0 = Date.now();
  let clock = T0;
  const { handler, gates, started, aborted } = scriptedHandler();
  const { server } = startServer(t, new InProcessTaskManager(handler, { maxTasks: 1 }), {
    spool,
    meter: metrics.meter,
    now: () => clock,
    rescanIntervalMs: 50, // frequent rescans: the watcher-missed count must still stay 0
  });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const at = (ms: number): void => void (clock = T0 + ms);

  const ids: Record<string, string> = {};
  ids.A = await client.enqueue({ name: 'A' });
  await waitFor(() => started.includes('A'), 'A to start'); // waited 0 s
  for (const name of ['B', 'C', 'D', 'E', 'F']) ids[name] = await client.enqueue({ name });
  await waitFor(() => server.counts.pending === 5, 'B..F to be admitted at T0');

  at(20);
  await client.abort(ids.E!); // aborted after 20 ms pending
  await waitFor(() => server.counts.pending === 4, 'E to be dropped');

  at(2000);
  gates.get('A')!.resolve('A done'); // A ran 2 s; B waited 2 s
  await waitFor(() => started.includes('B'), 'B to start');
  at(2000.3);
  gates.get('B')!.resolve('B done'); // B ran 0.3 ms; C waited 2.0003 s
  await waitFor(() => started.includes('C'), 'C to start');
  at(2300);
  gates.get('C')!.resolve('C done'); // C ran 0.2997 s; D waited 2.3 s
  await waitFor(() => started.includes('D'), 'D to start');
  at(47_300);
  gates.get('D')!.reject(new Error('D failed')); // D ran 45 s; F waited 47.3 s
  await waitFor(() => started.includes('F'), 'F to start');
  at(547_300);
  await client.abort(ids.F!); // aborted after 500 s running
  await waitFor(() => aborted.includes('F') && server.counts.running === 0, 'F to be terminated');

  const c = await metrics.collect();
  t.equal(c.value('received'), 6, 'six requests received');
  t.equal(c.value('finished', { [A.status]: 'normal' }), 3);
  t.equal(c.value('finished', { [A.status]: 'error' }), 1);
  t.equal(c.value('finished', { [A.status]: 'aborted' }), 2);
  t.equal(c.value('finished'), 6, 'and nothing else finished');

  const wait = c.histogram('waitDuration');
  t.equal(wait.count, 5, 'five started (E never did)');
  t.same(wait.buckets, { '0.0001': 1, '2.5': 3, '60': 1 }, 'A 0 s; B, C, D about 2 s; F 47.3 s');
  t.ok(Math.abs(wait.sum - 53.6003) < 1e-6, `wait sum ${wait.sum}`);
  const run = c.histogram('runDuration');
  t.equal(run.count, 4, 'four ran to an outcome (F was aborted)');
  t.same(run.buckets, { '0.0005': 1, '0.5': 1, '2.5': 1, '60': 1 }, 'B 0.3 ms, C 0.3 s, A 2 s, D 45 s');
  t.same(c.histogram('abortDuration', { [A.state]: 'pending' }).buckets, { '0.025': 1 }, 'E: 20 ms after admission');
  t.same(c.histogram('abortDuration', { [A.state]: 'running' }).buckets, { '600': 1 }, 'F: 500 s after its start');
  t.equal(c.value('tasksKilled', { [A.killReason]: 'abort' }), 1, 'F was killed');
  t.equal(c.value('tasksKilled'), 1);

  t.equal(c.value('requests', { [A.state]: 'pending' }), 0);
  t.equal(c.value('requests', { [A.state]: 'running' }), 0);
  t.equal(c.value('capacityUsage'), 0);
  t.equal(c.value('capacityLimit'), 1);
  t.equal(c.value('unclaimedResults'), 4, "A-D's results await their clients");
  t.ok(c.value('ticks') > 0, 'the loop ticked');
  t.same(c.points('ticks'), [{}], 'no tick failed');
  t.equal(c.value('watcherMissed'), 0, 'the watcher missed nothing');
  t.equal(c.value('workerCrashes'), 0);

  t.equal(await client.wait(ids.A!), 'A done');
  t.equal(await client.wait(ids.B!), 'B done');
  t.equal(await client.wait(ids.C!), 'C done');
  await t.rejects(client.wait(ids.D!), TaskFailedError);
  await waitFor(async () => (await metrics.collect()).value('unclaimedResults') === 0, 'the rescan to see the claims');
});

t.test('timed out (client deadline and run timeout), restarted, and tasks killed at shutdown', async (t) => {
  const metrics = testMetrics(t);
  const spool = join(t.testdir(), 'spool');
  const first = scriptedHandler();
  const one = startServer(t, new InProcessTaskManager(first.handler), { spool, meter: metrics.meter, shutdownGraceMs: 0 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());

  const interrupted = await client.enqueue({ name: 'R' });
  await waitFor(() => first.started.includes('R'), 'R to start');
  await one.stop(); // R is killed and left in running/ for the next server
  let c = await metrics.collect();
  t.equal(c.value('tasksKilled', { [A.killReason]: 'shutdown' }), 1, 'R was killed at shutdown');
  t.equal(c.value('finished'), 0, 'but did not finish');

  const second = scriptedHandler();
  startServer(t, new InProcessTaskManager(second.handler), { spool, meter: metrics.meter, interrupted: 'fail' });
  t.equal((await client.waitForResult(interrupted)).status, 'restarted');

  const slow = await client.enqueue({ name: 'X' });
  await waitFor(() => second.started.includes('X'), 'X to start');
  await t.rejects(client.wait(slow, { timeoutMs: 1 }), WorkQueueTimeoutError, 'the client gives up and aborts X');
  await waitFor(() => second.aborted.includes('X'), 'X to be killed');

  const limited = await client.enqueue({ name: 'Y' }, { runTimeoutMs: 1 });
  await t.rejects(client.wait(limited), WorkQueueTimeoutError, 'the server kills Y at its run timeout');

  c = await metrics.collect();
  t.equal(c.value('finished', { [A.status]: 'restarted' }), 1);
  t.equal(c.value('finished', { [A.status]: 'timed_out' }), 2, 'X and Y timed out');
  t.equal(c.value('finished'), 3);
  t.equal(c.histogram('abortDuration', { [A.state]: 'running' }).count, 1, "X's abort: from its start");
  t.equal(c.histogram('runDuration').count, 1, "Y's run, cut at its timeout");
  t.equal(c.value('tasksKilled', { [A.killReason]: 'abort' }), 1);
  t.equal(c.value('tasksKilled', { [A.killReason]: 'run_timeout' }), 1);
  t.equal(c.value('received'), 3, 'R, X, Y (the second server recovered R from running/, not received it)');
});

t.test('worker crashes, busy or idle, are counted and logged; kills are not crashes', async (t) => {
  const metrics = testMetrics(t);
  const dir = t.testdir({
    'handler.mjs': `export default async function (request) {
      if (request.hang) return new Promise(() => {});
      if (request.exitNow !== undefined) process.exit(request.exitNow);
      if (request.exitAfterReply) setTimeout(() => process.exit(4), 20);
      return 'ok';
    }`,
  });
  const pool = new ProcessPoolTaskManager({ handler: join(dir, 'handler.mjs') });
  t.teardown(() => pool.close());
  await pool.ready();
  const logger = new RecordingLogger();
  startServer(t, pool, { spool: join(dir, 'spool'), meter: metrics.meter, logger });
  const client = new WorkQueueClient({ spool: join(dir, 'spool') });
  t.teardown(() => client.close());

  await t.rejects(client.run({ exitNow: 3 }), { code: 'ERR_WORKER_CRASHED' }, 'a crash while busy fails its request');
  t.equal(await client.run({ exitAfterReply: true }), 'ok', 'a crash after replying fails nothing');
  await waitFor(async () => (await metrics.collect()).value('workerCrashes') === 2, 'both crashes to be counted');

  const hung = await client.enqueue({ hang: true });
  await waitFor(async () => (await metrics.collect()).value('requests', { [A.state]: 'running' }) === 1, 'the hung task to start');
  await client.abort(hung);
  await waitFor(() => pool.hasCapacity(), 'the killed worker to exit and be replaced');

  const c = await metrics.collect();
  t.equal(c.value('workerCrashes'), 2, 'the killed worker is not a crash');
  t.equal(c.value('tasksKilled', { [A.killReason]: 'abort' }), 1);
  t.equal(c.value('finished', { [A.status]: 'error' }), 1);
  t.equal(c.value('finished', { [A.status]: 'normal' }), 1);
  t.equal(pool.crashes, 2, 'the pool agrees');
  const logged = logger.lines.filter((l) => l.message === 'worker process crashed');
  t.equal(logged.length, 2);
  t.match(logged[0]!.fields, { exitCode: 3, pid: Number });
  t.equal(typeof logged[0]!.fields?.id, 'string', 'the busy crash names its request');
  t.equal(logged[1]!.fields?.id, undefined, 'the idle one names none');
});

t.test('entries the watcher never reported are counted once the rescan finds them', async (t) => {
  const metrics = testMetrics(t);
  const spool = join(t.testdir(), 'spool');
  const logger = new RecordingLogger();
  startServer(t, new InProcessTaskManager((request) => request), { spool, meter: metrics.meter, logger, rescanIntervalMs: 20 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  t.equal(await client.run('seen'), 'seen', 'the watcher works');

  // Break the watcher the way an operator's `rm -r requested; mkdir requested` would: it keeps
  // watching the old directory, so only the rescan can find what arrives in the new one.
  renameSync(join(spool, 'requested'), join(spool, 'requested.old'));
  mkdirSync(join(spool, 'requested'));
  t.equal(await client.run('found by the rescan'), 'found by the rescan');
  await waitFor(async () => (await metrics.collect()).value('watcherMissed') === 1, 'the miss to be counted');
  const c = await metrics.collect();
  t.equal(c.value('watcherMissed', { [A.directory]: 'requested' }), 1);
  t.ok(logger.lines.some((l) => l.level === 'warn' && l.message.includes('watcher missed')), 'and logged');
});

t.test('a spool served again does not count what it finds at start-up as missed', async (t) => {
  const metrics = testMetrics(t);
  const spool = join(t.testdir(), 'spool');
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const ids = [await client.enqueue(1), await client.enqueue(2)]; // no server yet
  writeFileSync(join(spool, 'requested', 'not-an-id'), ''); // ignored, never counted
  startServer(t, new InProcessTaskManager((request) => request), { spool, meter: metrics.meter, rescanIntervalMs: 20 });
  t.same([await client.wait(ids[0]!), await client.wait(ids[1]!)], [1, 2]);
  // Let a few rescans pass judgement on what the start-up scan found.
  const ticksNow = (await metrics.collect()).value('ticks');
  await waitFor(async () => (await metrics.collect()).value('ticks') >= ticksNow + 3, 'a few rescans');
  const c = await metrics.collect();
  t.equal(c.value('received'), 2);
  t.equal(c.value('watcherMissed'), 0);
});
