/**
 * The server's instruments, declared in one table and recorded through an
 * injected OpenTelemetry Meter: the global one by default, which is a no-op
 * until the application installs an SDK. A server without one pays only for
 * no-op calls: with the no-op Meter nothing is timed (bench/metrics-overhead.ts).
 *
 * Names follow the OpenTelemetry semantic conventions: one `wq.` namespace,
 * UCUM units (`s`, `{request}`), durations as histograms in seconds, "how many
 * are in this state now" as UpDownCounters (`*.count`, `*.usage`, `*.limit`),
 * failures labelled with `error.type`. docs/metrics.md explains each metric to
 * operators; keep it in step with this table.
 */
import { performance } from 'node:perf_hooks';
import {
  createNoopMeter,
  metrics as otel,
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type ObservableUpDownCounter,
} from '@opentelemetry/api';

/** The API's no-op Meter, what the global one is until an SDK is installed: nothing to time for it. */
const NoopMeter = createNoopMeter().constructor;

/** Instrumentation scope of the server's Meter. */
export const METER_NAME = 'spool-workqueue';

/**
 * Histogram bucket boundaries, in seconds: 100 µs up to 2 hours, roughly 1-2.5-5
 * per decade, so a no-op task's sub-millisecond round trip and an hour-long
 * provisioning job each land in a bucket of their own.
 */
export const DURATION_BUCKETS_S: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
  1800, 3600, 7200,
];

/** Attribute names, in one place. */
export const METRIC_ATTRIBUTES = {
  /** Where a request is (`pending`, `running`), or was when it was aborted. */
  state: 'wq.request.state',
  /** How a request left the queue: a FinishStatus. */
  status: 'wq.request.status',
  /** Why a running task was killed: a KillReason. */
  killReason: 'wq.task.kill_reason',
  /** The spool directory a missed entry was found in: `requested` or `aborting`. */
  directory: 'wq.spool.directory',
  /** Why a tick failed: the error's `code` (`EACCES`, `ENOSPC` …), else its name. Absent on success. */
  errorType: 'error.type',
} as const;

/** How a request left the queue. */
export type FinishStatus = 'normal' | 'error' | 'aborted' | 'timed_out' | 'restarted' | 'rejected';

/** Why a running task was terminated. */
export type KillReason = 'abort' | 'run_timeout' | 'shutdown';

/** Attribute sets built once: recording then allocates nothing. */
const attributeSets = <V extends string>(key: string, values: readonly V[]): Record<V, Attributes> =>
  Object.fromEntries(values.map((v) => [v, Object.freeze({ [key]: v })])) as unknown as Record<V, Attributes>;
const STATUS = attributeSets(METRIC_ATTRIBUTES.status, ['normal', 'error', 'aborted', 'timed_out', 'restarted', 'rejected'] satisfies FinishStatus[]);
const KILL_REASON = attributeSets(METRIC_ATTRIBUTES.killReason, ['abort', 'run_timeout', 'shutdown'] satisfies KillReason[]);
const STATE = attributeSets(METRIC_ATTRIBUTES.state, ['pending', 'running']);
const DIRECTORY = attributeSets(METRIC_ATTRIBUTES.directory, ['requested', 'aborting']);

type InstrumentKind = 'counter' | 'histogram' | 'updowncounter';

interface InstrumentSpec {
  name: string;
  kind: InstrumentKind;
  unit: string;
  description: string;
}

/**
 * Every instrument: key → OpenTelemetry name, kind, unit, description.
 * `updowncounter`s are observed at collection time from a QueueSnapshot.
 */
export const INSTRUMENTS = {
  ticks: { name: 'wq.server.ticks', kind: 'counter', unit: '{tick}', description: 'Server loop ticks (each runs reap, admit, abort, start); failed ones carry error.type' },
  received: { name: 'wq.request.received', kind: 'counter', unit: '{request}', description: 'Requests admitted from requested/ to pending/' },
  finished: { name: 'wq.request.finished', kind: 'counter', unit: '{request}', description: 'Requests that left the queue, by wq.request.status' },
  waitDuration: { name: 'wq.request.wait.duration', kind: 'histogram', unit: 's', description: 'Time a request waited in the queue, from admission (or server start) to its start' },
  runDuration: { name: 'wq.request.run.duration', kind: 'histogram', unit: 's', description: 'Time a task ran, from its start to its outcome (or its run timeout)' },
  abortDuration: { name: 'wq.request.abort.duration', kind: 'histogram', unit: 's', description: "Time from an aborted request's last state change (admission or start) to its abort, by wq.request.state" },
  requests: { name: 'wq.request.count', kind: 'updowncounter', unit: '{request}', description: 'Requests pending or running now, by wq.request.state' },
  capacityUsage: { name: 'wq.capacity.usage', kind: 'updowncounter', unit: '{task}', description: 'Tasks the task manager runs now' },
  capacityLimit: { name: 'wq.capacity.limit', kind: 'updowncounter', unit: '{task}', description: 'Most tasks the task manager runs at once' },
  unclaimedResults: { name: 'wq.result.unclaimed', kind: 'updowncounter', unit: '{result}', description: 'Results in complete/ that no client has claimed yet (recounted at each rescan)' },
  watcherMissed: { name: 'wq.watcher.missed', kind: 'counter', unit: '{entry}', description: 'Entries the file watcher never reported, found by the safety rescan, by wq.spool.directory' },
  tasksKilled: { name: 'wq.task.killed', kind: 'counter', unit: '{task}', description: 'Running tasks terminated, by wq.task.kill_reason' },
  workerCrashes: { name: 'wq.worker.crashes', kind: 'counter', unit: '{crash}', description: 'Task manager worker processes that died on their own' },
} as const satisfies Record<string, InstrumentSpec>;

export type InstrumentKey = keyof typeof INSTRUMENTS;

/** key → OpenTelemetry metric name (derived from INSTRUMENTS). */
export const METRIC_NAMES = Object.fromEntries(Object.entries(INSTRUMENTS).map(([key, spec]) => [key, spec.name])) as {
  readonly [K in InstrumentKey]: (typeof INSTRUMENTS)[K]['name'];
};

/** What the UpDownCounters read at each collection. */
export interface QueueSnapshot {
  pending: number;
  running: number;
  /** Tasks the task manager counts as running (its `size`). */
  capacityUsage: number;
  /** The task manager's `maxTasks`; not reported when infinite. */
  capacityLimit: number;
  unclaimedResults: number;
}

type CounterKey = { [K in InstrumentKey]: (typeof INSTRUMENTS)[K]['kind'] extends 'counter' ? K : never }[InstrumentKey];
type HistogramKey = { [K in InstrumentKey]: (typeof INSTRUMENTS)[K]['kind'] extends 'histogram' ? K : never }[InstrumentKey];
type ObservedKey = { [K in InstrumentKey]: (typeof INSTRUMENTS)[K]['kind'] extends 'updowncounter' ? K : never }[InstrumentKey];

/**
 * When a request's current wait or run began, on the metrics' monotonic clock
 * (ms): stamps ServerMetrics hands out, kept by the caller in its own books
 * (the server's book entry), so durations have sub-millisecond resolution and
 * do not jump with the wall clock. Undefined where nothing is timed (no-op Meter).
 */
export interface MetricsStamps {
  /** Since it joined the line (admitted, or found in pending/ at start). */
  waitingSince?: number | undefined;
  /** Since its task started. */
  runningSince?: number | undefined;
}

/**
 * The server's side of the instruments. The server reports what happens to a
 * request (received, started, finished, aborted) and keeps the stamps this
 * class returns with the request; this class keeps no per-request state.
 * @example
 * const metrics = new ServerMetrics(meter, () => snapshot);
 * const entry: MetricsStamps = { waitingSince: metrics.received() };
 * entry.runningSince = metrics.started(entry);
 * metrics.finished('normal', entry);
 * metrics.close();
 */
export class ServerMetrics {
  readonly #meter: Meter;
  readonly #clock: () => number;
  /** False for the no-op Meter: then no clock is read and no stamp handed out. */
  readonly #timed: boolean;
  readonly #counters = {} as Record<CounterKey, Counter>;
  readonly #histograms = {} as Record<HistogramKey, Histogram>;
  readonly #observed = {} as Record<ObservedKey, ObservableUpDownCounter>;
  readonly #observe: BatchObservableCallback;

  /**
   * @param meter where the instruments live. @default the global Meter `spool-workqueue`
   * @param snapshot read at each collection for the UpDownCounters
   * @param clock monotonic milliseconds for durations. @default performance.now
   */
  constructor(meter: Meter | undefined, snapshot: () => QueueSnapshot, clock: () => number = () => performance.now()) {
    this.#meter = meter ?? otel.getMeter(METER_NAME);
    this.#clock = clock;
    this.#timed = !(this.#meter instanceof NoopMeter);
    for (const [key, spec] of Object.entries(INSTRUMENTS) as Array<[InstrumentKey, InstrumentSpec]>) {
      const options = { unit: spec.unit, description: spec.description };
      if (spec.kind === 'counter') this.#counters[key as CounterKey] = this.#meter.createCounter(spec.name, options);
      else if (spec.kind === 'histogram') {
        this.#histograms[key as HistogramKey] = this.#meter.createHistogram(spec.name, {
          ...options,
          advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_S] },
        });
      } else this.#observed[key as ObservedKey] = this.#meter.createObservableUpDownCounter(spec.name, options);
    }
    // Zero every counter series we know of, so dashboards and alerts see 0 rather than no data.
    const c = this.#counters;
    for (const counter of [c.ticks, c.received, c.workerCrashes]) counter.add(0);
    for (const attributes of Object.values(STATUS)) c.finished.add(0, attributes);
    for (const attributes of Object.values(KILL_REASON)) c.tasksKilled.add(0, attributes);
    for (const attributes of Object.values(DIRECTORY)) c.watcherMissed.add(0, attributes);
    const o = this.#observed;
    this.#observe = (result) => {
      const s = snapshot();
      result.observe(o.requests, s.pending, STATE.pending);
      result.observe(o.requests, s.running, STATE.running);
      result.observe(o.capacityUsage, s.capacityUsage);
      if (Number.isFinite(s.capacityLimit)) result.observe(o.capacityLimit, s.capacityLimit);
      result.observe(o.unclaimedResults, s.unclaimedResults);
    };
    this.#meter.addBatchObservableCallback(this.#observe, Object.values(o));
  }

  /** One pass of the server loop; `error` if it failed. */
  tick(error?: unknown): void {
    this.#counters.ticks.add(1, error === undefined ? undefined : { [METRIC_ATTRIBUTES.errorType]: errorType(error) });
  }

  /** A new request was admitted: counts it; returns its waitingSince stamp. */
  received(): number | undefined {
    this.#counters.received.add(1);
    return this.#stamp();
  }

  /** A request found in pending/ at start-up: it waits from now, but was not received by this server. Returns its waitingSince stamp. */
  queued(): number | undefined {
    return this.#stamp();
  }

  /** A waiting request started: records its wait; returns its runningSince stamp. */
  started(stamps: MetricsStamps): number | undefined {
    if (!this.#timed) return undefined;
    const now = this.#clock();
    if (stamps.waitingSince !== undefined) this.#seconds('waitDuration', now - stamps.waitingSince);
    return now;
  }

  /**
   * A request left the queue with a result (or, for `aborted`/`timed_out` from
   * a client, see aborted()). Records its run time if it had started.
   */
  finished(status: FinishStatus, stamps?: MetricsStamps): void {
    if (stamps?.runningSince !== undefined) this.#seconds('runDuration', this.#clock() - stamps.runningSince);
    this.#counters.finished.add(1, STATUS[status]);
  }

  /**
   * An abort removed a request: records the time since its last state change,
   * labelled with the state it was in (nothing for a request not yet admitted,
   * whose arrival the server never saw: no stamps).
   */
  aborted(status: 'aborted' | 'timed_out', stamps?: MetricsStamps): void {
    const running = stamps?.runningSince;
    const since = running ?? stamps?.waitingSince;
    if (since !== undefined) this.#seconds('abortDuration', this.#clock() - since, running !== undefined ? STATE.running : STATE.pending);
    this.#counters.finished.add(1, STATUS[status]);
  }

  /** A running task was terminated. */
  killed(reason: KillReason): void {
    this.#counters.tasksKilled.add(1, KILL_REASON[reason]);
  }

  /** The safety rescan found `count` entries in `directory` that the watcher never reported. */
  watcherMissed(directory: 'requested' | 'aborting', count: number): void {
    this.#counters.watcherMissed.add(count, DIRECTORY[directory]);
  }

  /** A task manager's worker process died on its own. */
  workerCrashed(): void {
    this.#counters.workerCrashes.add(1);
  }

  /** Stops observing the server (it stopped); the instruments stay with the Meter. */
  close(): void {
    this.#meter.removeBatchObservableCallback(this.#observe, Object.values(this.#observed));
  }

  /** Now on the monotonic clock, or undefined when nothing is timed (the clock is then never read). */
  #stamp(): number | undefined {
    return this.#timed ? this.#clock() : undefined;
  }

  #seconds(key: HistogramKey, ms: number, attributes?: Attributes): void {
    this.#histograms[key].record(Math.max(0, ms) / 1000, attributes);
  }
}

/** `error.type`: a Node error code (`ENOSPC`), else the error's name; low-cardinality by construction. */
function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return error instanceof Error ? error.name : '_OTHER';
}
