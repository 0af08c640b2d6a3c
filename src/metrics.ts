/**
 * The server's instruments, declared in one table. They go through an injected
 * OpenTelemetry Meter (the global one by default, a no-op until an SDK is set
 * up), so a server without an exporter pays only for no-op calls.
 */
import { metrics as otel, type Attributes, type Counter, type Histogram, type Meter } from '@opentelemetry/api';

export const METER_NAME = 'spool-workqueue';

/** Seconds; fits sub-millisecond no-op tasks up to two-hour provisioning jobs. */
export const DURATION_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
  1800, 3600, 7200,
];

/** Attribute names, in one place. */
export const ATTR = {
  state: 'wq.request.state',
  status: 'wq.request.status',
} as const;

/** How a request left the queue. */
export type FinishStatus = 'normal' | 'error' | 'aborted' | 'timed_out' | 'restarted' | 'rejected';

/** name → [kind, unit, description]. docs/metrics.md describes each one for operators. */
export const INSTRUMENTS = {
  ticks: ['counter', '{tick}', 'Server loop ticks (each runs reap, admit, abort, start)'],
  waitDuration: ['histogram', 's', 'Time a request waited in the queue, from admission to start'],
  runDuration: ['histogram', 's', 'Time a task ran, from start to result'],
  abortDuration: ['histogram', 's', "Time from an aborted request's last state change to its abort"],
  received: ['counter', '{request}', 'Requests admitted from requested/ to pending/'],
  finished: ['counter', '{request}', 'Requests that left the queue, by wq.request.status'],
  requests: ['gauge', '{request}', 'Requests pending or running now, by wq.request.state'],
  capacityUsed: ['gauge', '{task}', 'Tasks running now'],
  capacityLimit: ['gauge', '{task}', 'Most tasks the task manager runs at once'],
  unclaimedResults: ['gauge', '{result}', 'Result files in complete/ that no client has claimed yet'],
  rescanFound: ['counter', '{entry}', 'Entries found by the safety rescan that the watcher had not reported'],
  tasksKilled: ['counter', '{task}', 'Running tasks terminated (aborts, timeouts, shutdown)'],
  workerCrashes: ['counter', '{process}', 'Task processes that died unexpectedly'],
} as const;

export const METRIC_NAMES: Record<keyof typeof INSTRUMENTS, string> = {
  ticks: 'wq.server.ticks',
  waitDuration: 'wq.request.wait.duration',
  runDuration: 'wq.request.run.duration',
  abortDuration: 'wq.request.abort.duration',
  received: 'wq.requests.received',
  finished: 'wq.requests.finished',
  requests: 'wq.requests',
  capacityUsed: 'wq.capacity.used',
  capacityLimit: 'wq.capacity.limit',
  unclaimedResults: 'wq.results.unclaimed',
  rescanFound: 'wq.rescan.found',
  tasksKilled: 'wq.tasks.killed',
  workerCrashes: 'wq.workers.crashed',
};

/** What the observable gauges read at each collection. */
export interface QueueSnapshot {
  pending: number;
  running: number;
  maxTasks: number;
  unclaimedResults: number;
}

type CounterName = 'ticks' | 'received' | 'finished' | 'rescanFound' | 'tasksKilled' | 'workerCrashes';
type HistogramName = 'waitDuration' | 'runDuration' | 'abortDuration';

export class ServerMetrics {
  readonly #counters = {} as Record<CounterName, Counter>;
  readonly #histograms = {} as Record<HistogramName, Histogram>;

  constructor(meter: Meter = otel.getMeter(METER_NAME), snapshot: () => QueueSnapshot) {
    for (const [key, [kind, unit, description]] of Object.entries(INSTRUMENTS)) {
      const name = METRIC_NAMES[key as keyof typeof INSTRUMENTS];
      if (kind === 'counter') this.#counters[key as CounterName] = meter.createCounter(name, { unit, description });
      if (kind === 'histogram') {
        this.#histograms[key as HistogramName] = meter.createHistogram(name, {
          unit,
          description,
          advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
        });
      }
    }
    const gauge = (key: keyof typeof INSTRUMENTS) =>
      meter.createObservableGauge(METRIC_NAMES[key], { unit: INSTRUMENTS[key][1], description: INSTRUMENTS[key][2] });
    const requests = gauge('requests');
    const used = gauge('capacityUsed');
    const limit = gauge('capacityLimit');
    const unclaimed = gauge('unclaimedResults');
    meter.addBatchObservableCallback(
      (result) => {
        const s = snapshot();
        result.observe(requests, s.pending, { [ATTR.state]: 'pending' });
        result.observe(requests, s.running, { [ATTR.state]: 'running' });
        result.observe(used, s.running);
        if (Number.isFinite(s.maxTasks)) result.observe(limit, s.maxTasks);
        result.observe(unclaimed, s.unclaimedResults);
      },
      [requests, used, limit, unclaimed],
    );
  }

  count(name: CounterName, value = 1, attributes?: Attributes): void {
    if (value > 0) this.#counters[name].add(value, attributes);
  }

  finished(status: FinishStatus): void {
    this.#counters.finished.add(1, { [ATTR.status]: status });
  }

  seconds(name: HistogramName, ms: number, attributes?: Attributes): void {
    this.#histograms[name].record(Math.max(0, ms) / 1000, attributes);
  }
}
