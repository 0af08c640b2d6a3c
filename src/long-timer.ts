/**
 * Timers for deadlines of any length. Node's setTimeout takes at most
 * 2^31-1 ms (about 24.8 days): a longer delay overflows and fires at once. A
 * long timeout here is a chain of shorter ones, each re-measured against a
 * monotonic clock, so it fires once, no earlier than its delay, however long.
 */

/** The longest delay setTimeout accepts (2^31-1 ms, about 24.8 days). */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** What a long timeout needs from its environment; tests pass a fake one. */
export interface TimerHost {
  /** A monotonic clock in ms (not the wall clock, which can be stepped). */
  nowMs(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimerHost: TimerHost = {
  // process.hrtime, not the global `performance`, which would load perf_hooks into every `wq` call.
  nowMs: () => {
    const [seconds, nanos] = process.hrtime();
    return seconds * 1000 + nanos / 1e6;
  },
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface LongTimeout {
  /** Cancels the timeout; harmless after it fired. */
  clear(): void;
}

/**
 * Calls `callback` once, `delayMs` from now, for any finite `delayMs` >= 0.
 * A delay of up to MAX_TIMER_DELAY_MS is one plain timer; a longer one waits in
 * steps of at most that, measuring what is left after each.
 * @example
 * const deadline = setLongTimeout(() => expire(id), runTimeoutMs);
 * deadline.clear(); // the task ended first
 */
export function setLongTimeout(callback: () => void, delayMs: number, host: TimerHost = systemTimerHost): LongTimeout {
  if (!(Number.isFinite(delayMs) && delayMs >= 0)) throw new RangeError(`a timeout must be a finite number of ms >= 0, got ${delayMs}`);
  const dueMs = host.nowMs() + delayMs;
  let handle: unknown;
  let cleared = false;
  const arm = (leftMs: number): void => {
    if (leftMs <= MAX_TIMER_DELAY_MS) {
      handle = host.setTimeout(callback, Math.max(0, leftMs));
      return;
    }
    handle = host.setTimeout(() => {
      if (!cleared) arm(dueMs - host.nowMs());
    }, MAX_TIMER_DELAY_MS);
  };
  arm(delayMs);
  return {
    clear(): void {
      cleared = true;
      host.clearTimeout(handle);
    },
  };
}
