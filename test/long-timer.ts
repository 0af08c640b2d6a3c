import t from 'tap';
import { MAX_TIMER_DELAY_MS, setLongTimeout, type TimerHost } from '../src/long-timer.js';

/** A fake monotonic clock with timers that refuse, like Node's, any delay setTimeout cannot hold. */
class FakeTimers implements TimerHost {
  now = 1_000;
  readonly #timers = new Map<number, { dueMs: number; callback: () => void }>();
  #next = 1;
  delays: number[] = [];

  nowMs(): number {
    return this.now;
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    if (delayMs > MAX_TIMER_DELAY_MS) throw new Error(`setTimeout(${delayMs}) would overflow and fire at once`);
    this.delays.push(delayMs);
    const handle = this.#next++;
    this.#timers.set(handle, { dueMs: this.now + delayMs, callback });
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  /** Moves the clock forward, firing due timers in order (a stopped process's timers fire late, at once). */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, timer]) => timer.dueMs <= until).sort((a, b) => a[1].dueMs - b[1].dueMs)[0];
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.now = Math.max(this.now, due[1].dueMs);
      due[1].callback();
    }
    this.now = until;
  }
}

const DAY_MS = 24 * 3600_000;

t.test('a delay setTimeout can hold is one plain timer', async (t) => {
  const timers = new FakeTimers();
  let fired = 0;
  setLongTimeout(() => fired++, 500, timers);
  t.strictSame(timers.delays, [500]);
  timers.advance(499);
  t.equal(fired, 0);
  timers.advance(1);
  t.equal(fired, 1);
  t.equal(timers.pending, 0);
});

t.test('30 days (over 2^31 ms) fires once, after 30 days, not at once', async (t) => {
  const timers = new FakeTimers();
  let fired = 0;
  setLongTimeout(() => fired++, 30 * DAY_MS, timers);
  timers.advance(MAX_TIMER_DELAY_MS);
  t.equal(fired, 0, 'not after the first 24.8 days');
  timers.advance(30 * DAY_MS - MAX_TIMER_DELAY_MS - 1);
  t.equal(fired, 0, 'not a millisecond early');
  timers.advance(1);
  t.equal(fired, 1, 'at 30 days');
  timers.advance(100 * DAY_MS);
  t.equal(fired, 1, 'and only once');
  t.ok(timers.delays.every((d) => d <= MAX_TIMER_DELAY_MS), 'no delay setTimeout cannot hold');
});

t.test('a delay far beyond 2^31 ms (a crafted request) waits in steps, each measured against the clock', async (t) => {
  const timers = new FakeTimers();
  let fired = 0;
  setLongTimeout(() => fired++, 1e12, timers);
  timers.advance(1e12 - 1);
  t.equal(fired, 0);
  timers.advance(1);
  t.equal(fired, 1);
  t.equal(timers.delays.length, Math.ceil(1e12 / MAX_TIMER_DELAY_MS), 'one step per 2^31-1 ms');
});

t.test('steps that fire late (a stopped process) do not push the deadline back', async (t) => {
  const timers = new FakeTimers();
  let fired = 0;
  setLongTimeout(() => fired++, 40 * DAY_MS, timers);
  // The process is stopped for 10 days past the first step: the clock jumps, the step fires late.
  timers.now += MAX_TIMER_DELAY_MS + 10 * DAY_MS;
  timers.advance(0);
  t.equal(fired, 0);
  timers.advance(40 * DAY_MS - (MAX_TIMER_DELAY_MS + 10 * DAY_MS));
  t.equal(fired, 1, 'at 40 days of the monotonic clock, not 40 days plus the lateness');
});

t.test('clear() stops it at any step, and is harmless after it fired', async (t) => {
  const timers = new FakeTimers();
  let fired = 0;
  const early = setLongTimeout(() => fired++, 30 * DAY_MS, timers);
  early.clear();
  timers.advance(31 * DAY_MS);
  const late = setLongTimeout(() => fired++, 30 * DAY_MS, timers);
  timers.advance(MAX_TIMER_DELAY_MS + 1);
  late.clear();
  timers.advance(31 * DAY_MS);
  t.equal(fired, 0, 'neither fired');
  t.equal(timers.pending, 0, 'no timer left');
  const short = setLongTimeout(() => fired++, 10, timers);
  timers.advance(10);
  short.clear();
  t.equal(fired, 1);
});

t.test('a delay that is not a finite number >= 0 is refused', async (t) => {
  for (const delay of [-1, Number.NaN, Number.POSITIVE_INFINITY]) t.throws(() => setLongTimeout(() => {}, delay, new FakeTimers()), RangeError, String(delay));
});

t.test('with the real clock: a short delay fires', async (t) => {
  await new Promise<void>((resolve) => setLongTimeout(resolve, 5));
  t.pass('fired');
});
