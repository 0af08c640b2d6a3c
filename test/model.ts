/**
 * Model-based tests of the protocol (docs/protocol.md), with fast-check.
 *
 * 1. The pure decisions against direct models over plain data: PendingQueue
 *    against a sorted array, planRecovery / planAbort / tombstoneExpired
 *    against their tables, planHousekeeping against a plain filter.
 * 2. The real WorkQueueServer and WorkQueueClients on a real temp spool, driven
 *    by random command sequences (enqueue, abort — also of ids not enqueued
 *    yet —, task completion, capacity changes, stop/start with either
 *    interrupted policy, background waits) and checked after every command
 *    against a small model: what is in each state directory, which tasks the
 *    server started and terminated (in order), and what every waiter got.
 *
 * A failure prints fast-check's seed and path; replay it with
 * FC_SEED=<seed> FC_PATH=<path> npx tap test/model.ts, adding
 * FC_REPLAY_PATH=<replayPath> for a command sequence (or give FC_PATH's first
 * number only: the run fails again and shrinks the same way). FC_RUNS sets
 * numRuns; FC_VERBOSE=1 or 2 lists the failing values met while shrinking.
 */
import { isDeepStrictEqual } from 'node:util';
import { deepStrictEqual, equal, fail, ok } from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { planHousekeeping, type AgedEntry, type HousekeepingPolicy } from '../src/spool/server/housekeeping.js';
import { PendingQueue } from '../src/spool/server/pending-queue.js';
import { planAbort, planRecovery, tombstoneExpired, type AbortTarget, type InterruptedPolicy, type RecoveryStep } from '../src/protocol.js';
import { formatRequestId, type IdSource } from '../src/spool/request-id.js';
import { waitFor } from './fixtures/helpers.js';
import { SpoolUnderTest, type Snapshot, type WaitOutcome } from './fixtures/spool-under-test.js';

/** Replay and sizing knobs: a test may read the environment, the library never does. */
function fcParameters<T>(numRuns: number): fc.Parameters<T> {
  const env = process.env;
  return {
    numRuns: env.FC_RUNS === undefined ? numRuns : Number(env.FC_RUNS),
    ...(env.FC_SEED === undefined ? {} : { seed: Number(env.FC_SEED) }),
    ...(env.FC_PATH === undefined ? {} : { path: env.FC_PATH }),
    ...(env.FC_VERBOSE === undefined ? {} : { verbose: Number(env.FC_VERBOSE) }),
  };
}

/** Runs a property; on failure the test fails with fast-check's report (seed, path, shrunk counterexample). */
async function check<T>(t: Test, property: fc.IProperty<T> | fc.IAsyncProperty<T>, parameters: fc.Parameters<T>): Promise<void> {
  const details = await fc.check(property, parameters);
  const report = fc.defaultReportMessage(details);
  if (details.failed) {
    t.comment(report ?? ''); // multi-line: the seed, the path, the shrunk counterexample and the error
    t.fail(`property failed (seed ${details.seed}, path ${details.counterexamplePath ?? '?'})`);
  } else t.pass(`${details.numRuns} runs (seed ${details.seed})${details.interrupted ? ', interrupted by the time limit' : ''}`);
}

// ---- 1. the pure decisions -----------------------------------------------------

/** Fixed-width ids, so lexical order is numeric order, as for real ids. */
const qid = (n: number): string => formatRequestId(1_700_000_000_000_000 + n, n.toString(16).padStart(12, '0'));

type QueueOp =
  | { op: 'insert' | 'remove' | 'has' | 'positionOf'; n: number }
  | { op: 'shift' | 'peek' | 'iterate' }
  | { op: 'insertRange'; from: number; count: number }
  | { op: 'shiftMany'; count: number };

/** A small pool of ids, so removals, re-inserts and late older ids are common. */
const queueN = fc.nat({ max: 12 });
const singleOps = (n: fc.Arbitrary<number>): Array<fc.WeightedArbitrary<QueueOp>> => [
  { weight: 6, arbitrary: n.map((n) => ({ op: 'insert' as const, n })) },
  { weight: 4, arbitrary: n.map((n) => ({ op: 'remove' as const, n })) },
  { weight: 2, arbitrary: n.map((n) => ({ op: 'has' as const, n })) },
  { weight: 2, arbitrary: n.map((n) => ({ op: 'positionOf' as const, n })) },
  { weight: 4, arbitrary: fc.constantFrom({ op: 'shift' as const }, { op: 'peek' as const }, { op: 'iterate' as const }) },
];
const queueOp: fc.Arbitrary<QueueOp> = fc.oneof(...singleOps(queueN));
/** Long runs through the queue, so that its compaction (after 1024 shifts) happens amid removals and re-inserts. */
const longQueueOp: fc.Arbitrary<QueueOp> = fc.oneof(
  ...singleOps(fc.nat({ max: 2500 })),
  { weight: 2, arbitrary: fc.record({ from: fc.nat({ max: 2500 }), count: fc.integer({ min: 1, max: 1300 }) }).map((r) => ({ op: 'insertRange' as const, ...r })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 1300 }).map((count) => ({ op: 'shiftMany' as const, count })) },
);

/** The model of a PendingQueue: a sorted array without duplicates. */
class SortedArrayQueue {
  readonly items: string[] = [];
  insert(id: string): boolean {
    if (this.items.includes(id)) return false;
    const at = this.items.findIndex((x) => x > id);
    this.items.splice(at === -1 ? this.items.length : at, 0, id);
    return true;
  }
  remove(id: string): boolean {
    const at = this.items.indexOf(id);
    if (at === -1) return false;
    this.items.splice(at, 1);
    return true;
  }
  positionOf(id: string): number | undefined {
    const at = this.items.indexOf(id);
    return at === -1 ? undefined : at + 1;
  }
}

/** An id's 1-based place in line as the queue's iterator shows it (what the server reads). */
function positionInLine(q: PendingQueue, id: string): number | undefined {
  const at = [...q].indexOf(id);
  return at === -1 ? undefined : at + 1;
}

function applyQueueOp(q: PendingQueue, m: SortedArrayQueue, op: QueueOp, step: string): void {
  switch (op.op) {
    case 'insert':
      equal(q.insert(qid(op.n)), m.insert(qid(op.n)), step);
      break;
    case 'remove':
      equal(q.remove(qid(op.n)), m.remove(qid(op.n)), step);
      break;
    case 'has':
      equal(q.has(qid(op.n)), m.items.includes(qid(op.n)), step);
      break;
    case 'positionOf':
      equal(positionInLine(q, qid(op.n)), m.positionOf(qid(op.n)), step);
      break;
    case 'shift':
      equal(q.shift(), m.items.shift(), step);
      break;
    case 'peek':
      equal([...q][0], m.items[0], step);
      break;
    case 'iterate':
      deepStrictEqual([...q], m.items, step);
      break;
    case 'insertRange':
      for (let n = op.from; n < op.from + op.count; n++) equal(q.insert(qid(n)), m.insert(qid(n)), `${step}: ${n}`);
      break;
    case 'shiftMany':
      for (let i = 0; i < op.count; i++) equal(q.shift(), m.items.shift(), `${step}: shift ${i}`);
      break;
  }
}

function queueProperty(ops: fc.Arbitrary<QueueOp[]>): fc.IProperty<[QueueOp[]]> {
  return fc.property(ops, (ops) => {
    const q = new PendingQueue();
    const m = new SortedArrayQueue();
    ops.forEach((op, i) => {
      const step = `step ${i} ${JSON.stringify(op)}`;
      applyQueueOp(q, m, op, step);
      // Only views that change nothing: peek() and shift() move past removed ids, which would hide their bugs.
      equal(q.size, m.items.length, `${step}: size`);
      deepStrictEqual([...q], m.items, `${step}: iteration`);
    });
  });
}

t.test('PendingQueue behaves as a sorted array of distinct ids', async (t) => {
  await check(t, queueProperty(fc.array(queueOp, { maxLength: 60, size: 'max' })), fcParameters(300));
});

t.test('PendingQueue stays a sorted array through compaction', async (t) => {
  // Shrinking arrays of thousands of ids is slow: bound it (a failure is still reported, less shrunk).
  await check(t, queueProperty(fc.array(longQueueOp, { maxLength: 30, size: 'max' })), { ...fcParameters(40), interruptAfterTimeLimit: 20_000 });
});

const AbortTargets: readonly AbortTarget[] = ['requested', 'pending', 'running', 'complete', 'unknown'];

t.test('planAbort: the abort table of docs/protocol.md', async (t) => {
  const table: Record<AbortTarget, ReturnType<typeof planAbort>> = {
    requested: { kind: 'drop', state: 'requested' },
    pending: { kind: 'drop', state: 'pending' },
    running: { kind: 'terminate' },
    complete: { kind: 'remove-result' },
    unknown: { kind: 'keep-tombstone' },
  };
  await check(t, fc.property(fc.constantFrom(...AbortTargets), (target) => deepStrictEqual(planAbort(target), table[target])), fcParameters(50));
});

t.test('tombstoneExpired: expired exactly when it has lived the ttl', async (t) => {
  const ms = fc.integer({ min: 0, max: 2 ** 40 });
  const property = fc.property(ms, ms, fc.integer({ min: 0, max: 2 ** 20 }), (first, now, ttl) => {
    equal(tombstoneExpired(first, now, ttl), now - first >= ttl);
    if (now >= first) equal(tombstoneExpired(first, first + ttl, ttl), true, 'at the ttl');
    if (ttl > 0) equal(tombstoneExpired(first, first + ttl - 1, ttl), false, 'one ms short');
  });
  await check(t, property, fcParameters(300));
});

t.test('planRecovery: every interrupted id once, in id order, by policy', async (t) => {
  const property = fc.property(
    fc.uniqueArray(fc.nat({ max: 60 }), { maxLength: 20 }),
    fc.array(fc.nat({ max: 60 }), { maxLength: 20 }),
    fc.constantFrom<InterruptedPolicy>('rerun', 'fail'),
    (running, complete, policy) => {
      const runningIds = running.map(qid);
      const before = [...runningIds];
      const completeIds = new Set(complete.map(qid));
      const expected = [...runningIds].sort().map((id): RecoveryStep => {
        if (completeIds.has(id)) return { kind: 'drop-leftover', id };
        return policy === 'rerun' ? { kind: 'requeue', id } : { kind: 'fail', id };
      });
      deepStrictEqual(planRecovery(runningIds, completeIds, policy), expected);
      deepStrictEqual(runningIds, before, 'the input is not modified');
    },
  );
  await check(t, property, fcParameters(300));
});

t.test('planHousekeeping is a filter by age, name and liveness', async (t) => {
  const NOW = 1_800_000_000_000;
  const policy: fc.Arbitrary<HousekeepingPolicy> = fc.record({ resultTtlMs: fc.integer({ min: 0, max: 100_000 }), leftoverMaxAgeMs: fc.integer({ min: 0, max: 100_000 }) });
  const idName = fc.nat({ max: 30 }).map(qid);
  const junkName = fc.oneof(
    fc.constantFrom('.hidden', 'README', '1795366421947895-8D42B22AD816', `${qid(1)}.bak`, 'result.1.2', 'x y', ''),
    fc.string({ maxLength: 12 }),
  );
  const logName = fc.oneof(
    fc.tuple(idName, fc.constantFrom('stdout', 'stderr', 'pid', 'stdout.1')).map(([id, suffix]) => `${id}.${suffix}`),
    idName,
    junkName,
  );
  /** Ages on both sides of every threshold, and far from them. */
  const aged = (name: fc.Arbitrary<string>, p: HousekeepingPolicy): fc.Arbitrary<AgedEntry> =>
    fc
      .tuple(name, fc.oneof(fc.constantFrom(p.resultTtlMs - 1, p.resultTtlMs, p.resultTtlMs + 1, p.leftoverMaxAgeMs - 1, p.leftoverMaxAgeMs, p.leftoverMaxAgeMs + 1), fc.integer({ min: -1000, max: 10_000_000 })))
      .map(([n, age]) => ({ name: n, changedMs: NOW - age }));
  const input = policy.chain((p) =>
    fc.record({
      p: fc.constant(p),
      complete: fc.array(aged(fc.oneof(idName, junkName), p), { maxLength: 12 }),
      temps: fc.array(aged(fc.oneof(junkName, idName), p), { maxLength: 12 }),
      logs: fc.array(aged(logName, p), { maxLength: 12 }),
      live: fc.array(idName, { maxLength: 10 }).map((ids) => new Set(ids)),
    }),
  );
  const property = fc.property(input, ({ p, complete, temps, logs, live }) => {
    const isId = (name: string): boolean => /^\d{16}-[0-9a-f]{12}$/.test(name);
    const owner = (name: string): string => name.split('.')[0]!;
    const expected = { expiredResults: [] as string[], staleTemps: [] as string[], orphanLogs: [] as string[] };
    for (const e of complete) if (isId(e.name) && NOW - e.changedMs > p.resultTtlMs) expected.expiredResults.push(e.name);
    for (const e of temps) if (NOW - e.changedMs > p.leftoverMaxAgeMs) expected.staleTemps.push(e.name);
    for (const e of logs) if (NOW - e.changedMs > p.leftoverMaxAgeMs && !live.has(owner(e.name))) expected.orphanLogs.push(e.name);
    deepStrictEqual(planHousekeeping(NOW, p, complete, temps, logs, live), expected);
  });
  await check(t, property, fcParameters(300));
});

// ---- 2. the real server and clients against a model -------------------------------

/** Requests per run: ids are predictable (a client whose clock stands still counts up by 1 µs). */
const MAX_REQUESTS = 10;
const BASE_MICROS = 1_800_000_000_000_000;
const SUFFIX = 'a0b1c2d3e4f5';
const requestId = (i: number): string => formatRequestId(BASE_MICROS + i, SUFFIX);
const predictableIds = (): IdSource => ({ nowMicros: () => BASE_MICROS, suffix: () => SUFFIX });
/** Each run starts a server with this capacity; SetCapacity commands change it (a fixed start shrinks better). */
const INITIAL_CAPACITY = 1;
/** Longest wait for the real system to reach the state the model predicts. */
const SETTLE_MS = 2500;

type Expected = { ok: true; status: 'normal'; value: string } | { ok: false; status: 'error' | 'restarted'; code: string };
/** Where a request is. `interrupted`: in running/ while no server runs. `gone`: in no state (claimed or aborted). */
type Place = 'requested' | 'pending' | 'running' | 'interrupted' | 'complete' | 'gone';
type WaitExpectation =
  | { kind: 'pending' }
  | { kind: 'unknown' }
  | { kind: 'result'; result: Expected }
  /** Several waits were waiting when the result came: exactly one gets it, the others "unknown". */
  | { kind: 'race'; result: Expected; among: number[] };

interface ModelRequest {
  place: Place;
  /** Starts over every server lifetime (a rerun starts it again). */
  starts: number;
  result?: Expected;
  /** Indices of the waits still waiting for it. */
  waits: number[];
}

const sorted = (ids: Iterable<string>): string[] => [...ids].sort();
const short = (id: string): string => `#${Number(id.slice(0, 16)) - BASE_MICROS}`;

/** The model: plain maps and arrays, changed by the commands, predicting the settled state. */
class Model {
  up = true;
  capacity: number;
  enqueued = 0;
  readonly requests = new Map<string, ModelRequest>();
  /** This lifetime's running ids, in start order. */
  running: string[] = [];
  /** Abort markers on disk: tombstones, and (while down) aborts not yet carried out. */
  readonly aborting = new Set<string>();
  /** This (or the last) lifetime's starts and terminations, in order. */
  starts: string[] = [];
  terminated: string[] = [];
  /** Ids this lifetime terminated for an abort: a late outcome for them must be discarded. */
  abortedRunning: string[] = [];
  readonly waits: WaitExpectation[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  #in(place: Place): string[] {
    return sorted([...this.requests].filter(([, r]) => r.place === place).map(([id]) => id));
  }

  /** Starts the oldest pending requests while there is capacity (the server's startPending). */
  #fill(): void {
    while (this.up && this.running.length < this.capacity) {
      const next = this.#in('pending')[0];
      if (next === undefined) return;
      const r = this.requests.get(next)!;
      r.place = 'running';
      r.starts++;
      this.running.push(next);
      this.starts.push(next);
    }
  }

  /** A result is published: a waiting wait claims it, else it stays in complete/. */
  #resolve(id: string, result: Expected): void {
    const r = this.requests.get(id)!;
    if (r.waits.length === 0) {
      r.place = 'complete';
      r.result = result;
      return;
    }
    const among = r.waits;
    for (const w of among) this.waits[w] = among.length === 1 ? { kind: 'result', result } : { kind: 'race', result, among };
    r.place = 'gone';
    r.waits = [];
  }

  /** The request leaves every state without a result: its waits learn it is unknown. */
  #vanish(id: string): void {
    const r = this.requests.get(id)!;
    for (const w of r.waits) this.waits[w] = { kind: 'unknown' };
    r.waits = [];
    r.place = 'gone';
    r.result = undefined;
  }

  enqueue(): string {
    const id = requestId(this.enqueued++);
    const r: ModelRequest = { place: this.up ? 'pending' : 'requested', starts: 0, waits: [] };
    this.requests.set(id, r);
    if (this.up && this.aborting.delete(id)) r.place = 'gone'; // the early abort wins
    this.#fill();
    return id;
  }

  abort(id: string): void {
    if (this.aborting.has(id)) return; // already filed: the second is refused (EEXIST) and changes nothing
    const r = this.requests.get(id);
    if (!this.up || r === undefined || r.place === 'gone') {
      this.aborting.add(id); // carried out at the next start, or kept as a tombstone
      return;
    }
    if (r.place === 'running') {
      this.running = this.running.filter((x) => x !== id);
      this.terminated.push(id);
      this.abortedRunning.push(id);
    }
    this.#vanish(id);
    this.#fill();
  }

  /**
   * A task finishes and its request is aborted at once, before the server has
   * looked: the outcome is reaped first, then the abort finds the result. A
   * wait may claim it in between (`claimedFirst`), and the abort is then kept
   * as a tombstone; otherwise the abort removes the result and the waits learn
   * the request is unknown.
   */
  completeThenAbort(id: string, result: Expected, claimedFirst: boolean): void {
    if (claimedFirst) {
      this.complete(id, result);
      this.abort(id); // it is gone by then: kept as a tombstone
      return;
    }
    this.running = this.running.filter((x) => x !== id);
    this.#vanish(id); // its result removed, the abort carried out
    this.#fill();
  }

  complete(id: string, result: Expected): void {
    this.running = this.running.filter((x) => x !== id);
    this.#resolve(id, result);
    this.#fill();
  }

  setCapacity(n: number): void {
    this.capacity = n;
    this.#fill();
  }

  wait(id: string): number {
    const index = this.waits.length;
    const r = this.requests.get(id)!;
    if (r.place === 'complete') {
      this.waits.push({ kind: 'result', result: r.result! }); // claimed at once
      r.place = 'gone';
      r.result = undefined;
    } else if (r.place === 'gone') {
      this.waits.push({ kind: 'unknown' });
    } else {
      this.waits.push({ kind: 'pending' });
      r.waits.push(index);
    }
    return index;
  }

  /**
   * Two clients wait for one request at once. A result already in complete/
   * goes to either of them (docs/protocol.md, "Claiming a result": one unlink
   * wins), the other is told "unknown"; a result still to come is a race as well.
   */
  waitTogether(id: string): [number, number] {
    const r = this.requests.get(id)!;
    if (r.place !== 'complete') return [this.wait(id), this.wait(id)];
    const among = [this.waits.length, this.waits.length + 1];
    for (let i = 0; i < among.length; i++) this.waits.push({ kind: 'race', result: r.result!, among });
    r.place = 'gone';
    r.result = undefined;
    return [among[0]!, among[1]!];
  }

  /** The server stops: running tasks are terminated and stay in running/. */
  stop(): void {
    this.up = false;
    for (const id of this.running) this.requests.get(id)!.place = 'interrupted';
    this.terminated.push(...this.running);
    this.running = [];
  }

  /** A server starts: recovery, then its first tick (admit, aborts, starts). */
  start(policy: InterruptedPolicy): void {
    this.up = true;
    this.starts = [];
    this.terminated = [];
    this.abortedRunning = [];
    for (const id of sorted(this.aborting)) {
      const r = this.requests.get(id);
      if (r === undefined || r.place === 'gone') continue; // stays a tombstone
      // Requested, pending, interrupted (requeued, or failed and its result removed) or complete: gone.
      this.#vanish(id);
      this.aborting.delete(id);
    }
    for (const id of this.#in('interrupted')) {
      if (policy === 'rerun') this.requests.get(id)!.place = 'pending';
      else this.#resolve(id, { ok: false, status: 'restarted', code: 'ERR_SERVER_RESTARTED' });
    }
    for (const id of this.#in('requested')) this.requests.get(id)!.place = 'pending';
    this.#fill();
  }

  expected(): Snapshot {
    return {
      requested: this.#in('requested'),
      pending: this.#in('pending'),
      running: this.up ? sorted(this.running) : this.#in('interrupted'),
      complete: this.#in('complete'),
      aborting: sorted(this.aborting),
      tmp: [],
      locked: this.up,
      live: sorted(this.running),
      started: [...this.starts],
      terminated: [...this.terminated],
    };
  }

  counts(): { pending: number; running: number } {
    return { pending: this.#in('pending').length, running: this.running.length };
  }
}

function resultMatches(actual: WaitOutcome | undefined, expected: Expected): boolean {
  if (actual?.kind !== 'result') return false;
  const r = actual.result;
  if (expected.ok) return r.ok && r.status === expected.status && isDeepStrictEqual(r.value, expected.value);
  return !r.ok && r.status === expected.status && r.error?.code === expected.code;
}

function describe(outcome: WaitOutcome | undefined): string {
  if (outcome === undefined) return 'still waiting';
  if (outcome.kind !== 'result') return outcome.kind === 'failed' ? `failed: ${outcome.error}` : outcome.kind;
  const r = outcome.result;
  return `result ${JSON.stringify({ ok: r.ok, status: r.status, value: r.value, code: r.error?.code })}`;
}

/**
 * Checks every wait that has an outcome against the model; throws on a wrong
 * one. Returns whether the outcomes that must be there by now are there: a
 * claimed result at once; "unknown" (two re-checks later) only when `final`.
 */
function checkWaits(m: Model, r: SpoolUnderTest, final: boolean): boolean {
  let ready = true;
  const delivered = new Map<string, number>();
  m.waits.forEach((expected, i) => {
    const wait = r.waits[i]!;
    const actual = wait.outcome;
    const what = `wait ${i} (${short(wait.id)}, client ${wait.client}): expected ${JSON.stringify(expected)}, got ${describe(actual)}`;
    if (actual?.kind === 'result') delivered.set(wait.id, (delivered.get(wait.id) ?? 0) + 1);
    switch (expected.kind) {
      case 'pending':
        if (actual !== undefined && actual.kind !== 'cancelled') fail(what);
        break;
      case 'unknown':
        if (actual === undefined) ready &&= !final;
        else if (actual.kind !== 'unknown') fail(what);
        break;
      case 'result':
        if (actual === undefined) ready = false;
        else if (!resultMatches(actual, expected.result)) fail(what);
        break;
      case 'race': {
        if (actual !== undefined && actual.kind !== 'unknown' && !resultMatches(actual, expected.result)) fail(what);
        const winners = expected.among.filter((w) => r.waits[w]!.outcome?.kind === 'result').length;
        if (winners === 0 || (final && actual === undefined)) ready = false;
        break;
      }
    }
  });
  for (const [id, n] of delivered) if (n > 1) fail(`the result of ${short(id)} was delivered to ${n} waits`);
  return ready;
}

/** Faults the real system reports by itself: none is expected, ever. */
function checkHealth(r: SpoolUnderTest): void {
  for (const manager of r.managers) deepStrictEqual(manager.violations, [], 'the task manager saw no protocol violation');
  deepStrictEqual(r.errors, [], 'the server logged no error');
  equal(r.serverFailure, undefined, 'the server is still serving');
}

/**
 * Waits (deadline-bound) until the spool, the task manager and the waits
 * reflect what the model predicts, then checks it. `look`: also wait until
 * the server has run a few more ticks (each periodic rescan makes one), and
 * check nothing changed, for commands whose effect is no change at all.
 */
async function settle(m: Model, r: SpoolUnderTest, what: string, look = false): Promise<void> {
  const kind = /^\w+/.exec(what)![0];
  executed.set(kind, (executed.get(kind) ?? 0) + 1);
  const expected = m.expected();
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    checkHealth(r);
    const done = checkWaits(m, r, false);
    const actual = r.snapshot();
    if (done && isDeepStrictEqual(actual, expected)) break;
    if (Date.now() > deadline) {
      deepStrictEqual(actual, expected, `after ${what}: the spool and the task manager are not as the model says`);
      fail(`after ${what}: a claimed result did not reach its waiter`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  if (r.up) {
    const ticks = r.manager.ticks;
    if (look) await waitFor(() => r.manager.ticks >= ticks + 3, 'three more server ticks', SETTLE_MS, 2);
    deepStrictEqual(r.snapshot(), expected, `after ${what}: the state changed after it settled`);
  }
  if (m.up) deepStrictEqual(r.counts, m.counts(), `after ${what}: the server's own counts`);
  if (!m.up) ok(r.manager.closed, 'the stopped server closed its task manager');
  checkHealth(r);
}

type Cmd = fc.AsyncCommand<Model, SpoolUnderTest>;

/** Commands carried out, by kind, over every run: reported, to show what the runs covered. */
const executed = new Map<string, number>();

class Enqueue implements Cmd {
  check = (m: Readonly<Model>): boolean => m.enqueued < MAX_REQUESTS;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    const n = m.enqueued;
    const id = m.enqueue();
    equal(await r.clients[0].enqueue({ n }), id, 'the predicted id');
    await settle(m, r, this.toString());
  }
  toString = (): string => 'Enqueue';
}

class Abort implements Cmd {
  constructor(
    readonly k: number,
    readonly client: 0 | 1,
    readonly look: boolean,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    // One of the ids enqueued so far, or of the next two (aborted before they are published).
    const id = requestId(this.k % (m.enqueued + 2));
    m.abort(id);
    await r.clients[this.client].abort(id);
    await settle(m, r, this.toString(), this.look);
  }
  toString = (): string => `Abort(k=${this.k} by client ${this.client}${this.look ? ', let the server look' : ''})`;
}

class Complete implements Cmd {
  constructor(
    readonly k: number,
    readonly success: boolean,
  ) {}
  check = (m: Readonly<Model>): boolean => m.up && m.running.length > 0;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    const id = m.running[this.k % m.running.length]!;
    const starts = m.requests.get(id)!.starts;
    m.complete(id, this.success ? { ok: true, status: 'normal', value: `${id}#${starts}` } : { ok: false, status: 'error', code: 'E_SCRIPTED' });
    r.manager.finish(
      id,
      this.success
        ? { ok: true, value: `${id}#${r.startsOf(id)}` }
        : { ok: false, error: { name: 'ScriptedError', message: `task ${id} failed`, code: 'E_SCRIPTED' } },
    );
    await settle(m, r, `${this.toString()} of ${short(id)}`);
  }
  toString = (): string => `Complete(running[${this.k}], ${this.success ? 'ok' : 'error'})`;
}

/**
 * The race of docs/protocol.md's abort table: a task finishes and, before the
 * server has looked, its request is aborted. Either a wait claims the result
 * before the abort is carried out, or the abort removes it; never both.
 */
class CompleteAndAbort implements Cmd {
  constructor(
    readonly k: number,
    readonly client: 0 | 1,
  ) {}
  check = (m: Readonly<Model>): boolean => m.up && m.running.length > 0;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    const id = m.running[this.k % m.running.length]!;
    const waited = m.requests.get(id)!.waits.length > 0;
    r.manager.finish(id, { ok: true, value: `${id}#${r.startsOf(id)}` });
    await r.clients[this.client].abort(id);
    // Which happened first is the real system's choice: observe it, then check everything else.
    const claimed = (): boolean => r.waits.some((w) => w.id === id && w.outcome?.kind === 'result');
    let claimedFirst = false;
    if (waited) {
      // On timeout neither happened: settle() below then reports the whole state against the model.
      await waitFor(() => claimed() || !r.snapshot().aborting.includes(id), 'the result claimed or the abort carried out', SETTLE_MS, 2).catch(() => undefined);
      claimedFirst = claimed();
    }
    m.completeThenAbort(id, { ok: true, status: 'normal', value: `${id}#${m.requests.get(id)!.starts}` }, claimedFirst);
    await settle(m, r, `${this.toString()} of ${short(id)}${waited ? (claimedFirst ? ': a wait claimed it first' : ': the abort came first') : ''}`);
  }
  toString = (): string => `CompleteAndAbort(running[${this.k}] by client ${this.client})`;
}

class LateOutcome implements Cmd {
  constructor(readonly k: number) {}
  check = (m: Readonly<Model>): boolean => m.up && m.abortedRunning.length > 0;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    const id = m.abortedRunning[this.k % m.abortedRunning.length]!;
    r.manager.finishLate(id); // the server must discard it
    await settle(m, r, `${this.toString()} of ${short(id)}`, true);
  }
  toString = (): string => `LateOutcome(aborted[${this.k}])`;
}

class SetCapacity implements Cmd {
  constructor(readonly n: number) {}
  check = (): boolean => true;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    m.setCapacity(this.n);
    if (r.up) r.manager.setCapacity(this.n);
    await settle(m, r, this.toString());
  }
  toString = (): string => `SetCapacity(${this.n})`;
}

class Stop implements Cmd {
  check = (m: Readonly<Model>): boolean => m.up;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    m.stop();
    await r.stop();
    await settle(m, r, this.toString());
  }
  toString = (): string => 'Stop';
}

class Start implements Cmd {
  constructor(readonly policy: InterruptedPolicy) {}
  check = (m: Readonly<Model>): boolean => !m.up;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    m.start(this.policy);
    r.start(m.capacity, this.policy);
    await settle(m, r, this.toString());
  }
  toString = (): string => `Start(${this.policy})`;
}

class Restart implements Cmd {
  constructor(readonly policy: InterruptedPolicy) {}
  check = (m: Readonly<Model>): boolean => m.up;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    m.stop();
    await r.stop();
    m.start(this.policy);
    r.start(m.capacity, this.policy);
    await settle(m, r, this.toString());
  }
  toString = (): string => `Restart(${this.policy})`;
}

class Wait implements Cmd {
  constructor(
    readonly k: number,
    readonly client: 0 | 1,
    readonly twice: boolean,
  ) {}
  check = (m: Readonly<Model>): boolean => m.enqueued > 0;
  async run(m: Model, r: SpoolUnderTest): Promise<void> {
    const id = requestId(this.k % m.enqueued);
    if (this.twice) {
      const [first, second] = m.waitTogether(id);
      equal(first, r.waits.length);
      r.wait(id, this.client);
      equal(second, r.waits.length);
      r.wait(id, this.client === 0 ? 1 : 0);
    } else {
      equal(m.wait(id), r.waits.length);
      r.wait(id, this.client);
    }
    await settle(m, r, this.toString());
  }
  toString = (): string => `Wait(k=${this.k} by client ${this.client}${this.twice ? ' and the other' : ''})`;
}

const client = fc.constantFrom<0 | 1>(0, 1);
const policy = fc.constantFrom<InterruptedPolicy>('rerun', 'fail');
const commandArbitraries: Array<fc.Arbitrary<Cmd>> = [
  fc.constant(new Enqueue()),
  fc.constant(new Enqueue()),
  fc.constant(new Enqueue()),
  fc.tuple(fc.nat({ max: MAX_REQUESTS + 1 }), client, fc.boolean()).map(([i, c, look]) => new Abort(i, c, look)),
  fc.tuple(fc.nat({ max: 3 }), fc.boolean()).map(([k, success]) => new Complete(k, success)),
  fc.tuple(fc.nat({ max: 3 }), fc.boolean()).map(([k, success]) => new Complete(k, success)),
  fc.tuple(fc.nat({ max: 3 }), fc.boolean()).map(([k, success]) => new Complete(k, success)),
  fc.tuple(fc.nat({ max: 3 }), client).map(([k, c]) => new CompleteAndAbort(k, c)),
  fc.nat({ max: 3 }).map((k) => new LateOutcome(k)),
  fc.nat({ max: 3 }).map((n) => new SetCapacity(n)),
  fc.constant(new Stop()),
  policy.map((p) => new Start(p)),
  policy.map((p) => new Restart(p)),
  fc.tuple(fc.nat({ max: MAX_REQUESTS - 1 }), client, fc.boolean()).map(([i, c, twice]) => new Wait(i, c, twice)),
];

/** After the last command: the server has looked again and changed nothing; every wait got what the model says. */
async function finalCheck(m: Model, r: SpoolUnderTest): Promise<void> {
  await settle(m, r, 'Final check', true);
  const deadline = Date.now() + SETTLE_MS;
  while (!checkWaits(m, r, true)) {
    if (Date.now() > deadline) {
      const open = m.waits.flatMap((e, i) => (e.kind !== 'pending' && r.waits[i]!.outcome === undefined ? [`wait ${i}: expected ${JSON.stringify(e)}, still waiting`] : []));
      fail(`waits did not end as the model says: ${open.join('; ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One run: a fresh spool with a server of capacity INITIAL_CAPACITY, the commands, the final check. */
async function runModel(spool: string, durable: boolean, commands: Iterable<Cmd>): Promise<void> {
  const model = new Model(INITIAL_CAPACITY);
  const real = new SpoolUnderTest(spool, predictableIds(), durable);
  real.start(INITIAL_CAPACITY, 'rerun');
  try {
    await fc.asyncModelRun(() => ({ model, real }), commands);
    await finalCheck(model, real);
  } finally {
    await real.close();
  }
}

t.test('the real server and clients follow the model', async (t) => {
  t.teardown(() => {}); // see test/server.ts: servers stop before tap removes the directory
  const base = t.testdir();
  let run = 0;
  const replayPath = process.env.FC_REPLAY_PATH; // the commands' own replayPath="…" of a report
  const commands = fc.commands(commandArbitraries, { maxCommands: 40, size: 'max', ...(replayPath === undefined ? {} : { replayPath }) });
  const property = fc.asyncProperty(fc.boolean(), commands, (durable, commands) =>
    runModel(join(base, `run-${++run}`), durable, commands),
  );
  const started = Date.now();
  await check(t, property, { ...fcParameters(50), interruptAfterTimeLimit: 60_000, timeout: 30_000 });
  t.comment(`${Date.now() - started} ms; commands carried out: ${[...executed].map(([k, n]) => `${k} ${n}`).join(', ')}`);
});

/**
 * Counterexamples the property found, minimised by hand, replayed on every
 * run (a random run meets them rarely). Indices are relative, as in the
 * commands: Abort(k) aborts #(k mod (enqueued + 2)), Wait(k) waits for #(k mod enqueued).
 */
const KNOWN_COUNTEREXAMPLES: Array<{ name: string; durable: boolean; commands: () => Cmd[] }> = [
  // Found with seed -683776006, path "584:6:9:19:24:37:8:15:24:24:23:23:25:27:27" (durable only):
  // recovery's 'restarted' result is still in the durable group commit when the first tick meets
  // the abort, so the abort is taken for one of an unknown id and kept as a tombstone; the result
  // is then published and the wait claims it.
  ...[false, true].map((durable) => ({
    name: `an abort filed while no server runs wins over the 'restarted' result${durable ? ' (durable)' : ''}`,
    durable,
    commands: () => [new Enqueue(), new Wait(0, 0, false), new Stop(), new Abort(0, 1, false), new Start('fail')],
  })),
  // Found with seed 1077360818, path "5:14:18:17:28:33:36:34:34:36:36": client 0 enqueued #4,
  // so its wait counts on its watch of complete/ to report the restarted result, while the other
  // client, which has no such knowledge, looks at once and claims it. Either may win (one unlink
  // does); the model had the first waiter win.
  {
    name: 'two clients wait at once for a result already published: either may claim it',
    durable: false,
    commands: () => [
      new Enqueue(),
      new Restart('fail'),
      new Enqueue(),
      new Enqueue(),
      new Complete(0, false),
      new Complete(0, false),
      new Enqueue(),
      new SetCapacity(2),
      new Wait(0, 0, false),
      new Enqueue(),
      new Restart('fail'),
      new Wait(4, 0, true),
    ],
  },
];

t.test('known counterexamples', async (t) => {
  t.teardown(() => {});
  const base = t.testdir();
  for (const [i, { name, durable, commands }] of KNOWN_COUNTEREXAMPLES.entries()) {
    await t.test(name, async (t) => {
      await runModel(join(base, `known-${i}`), durable, commands());
      t.pass(commands().map(String).join(', '));
    });
  }
});
