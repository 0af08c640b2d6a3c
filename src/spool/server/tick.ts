/**
 * One tick: where a request goes next. Synchronous: nothing else runs until
 * it returns, so every transition of a request happens inside a tick.
 * Invariants: no step runs on a spool that fails the layout check; a step that
 * fails (EACCES, EMFILE, ENOSPC …) does not stop the steps after it, except that
 * nothing starts while aborts could not be carried out (an abort must win).
 */
import { admitNew, processAborts } from './intake.js';
import { expireRunTimeouts, parkWaiting, publishHold, reapCompleted, startPending } from './run-steps.js';
import type { Serving } from './serving.js';

/** Counts of one tick, for the summary log line. */
interface TickCounts {
  added: number;
  started: number;
  aborted: number;
  completed: number;
}

/**
 * The steps, in order; the next event or rescan retries what failed.
 * @example
 * tick(serving); // a test drives the server one tick at a time with a scripted TaskManager
 */
export function tick(s: Serving): void {
  s.ticks++;
  const steps = new StepRunner();
  steps.run(() => s.manager.startTick());
  if (!s.guardLayout()) return;
  const completed = steps.count(() => reapCompleted(s));
  const expired = steps.count(() => expireRunTimeouts(s));
  const added = steps.count(() => admitNew(s));
  // (steps.failure is the tick's first failure: it changes here only if nothing before failed.)
  const before = steps.failure;
  const aborted = expired + steps.count(() => processAborts(s));
  const abortsFailed = steps.failure !== before;
  const started = !s.draining && !abortsFailed ? steps.count(() => startPending(s)) : 0;
  const startFailed = steps.failure !== before;
  steps.run(() => parkWaiting(s));
  steps.run(() => publishHold(s, startFailed));
  logTick(s, { added, started, aborted, completed });
  s.metrics.tick(steps.failure);
  if (steps.failure === undefined) s.faults.succeeded('tick');
  else s.faults.failed('tick', steps.failure);
}

/** Runs a tick's steps: a step that throws counts 0, and the tick's first failure is kept. */
class StepRunner {
  failure: unknown;

  run(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.failure ??= err;
    }
  }

  count(step: () => number): number {
    try {
      return step();
    } catch (err) {
      this.failure ??= err;
      return 0;
    }
  }
}

/** Logs a tick that moved something, and a heartbeat now and then. */
function logTick(s: Serving, c: TickCounts): void {
  const now = s.o.now();
  if (c.added + c.started + c.aborted + c.completed > 0) {
    s.log.info('tick', { new: c.added, started: c.started, aborted: c.aborted, completed: c.completed, pending: s.book.queued, running: s.book.running });
  }
  // A wall clock stepped back does not postpone the heartbeat by the step.
  if (now >= s.nextHeartbeat || s.nextHeartbeat - now > s.o.heartbeatIntervalMs) {
    s.nextHeartbeat = now + s.o.heartbeatIntervalMs;
    s.log.info('heartbeat', { ticks: s.ticks, pending: s.book.queued, running: s.book.running });
  }
}
