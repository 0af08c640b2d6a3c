/**
 * Request ids: `<16-digit microseconds since the epoch>-<12 hex digits>`.
 * Fixed width, so lexical order is arrival order; the random suffix keeps two
 * clients in the same microsecond apart. One generator keeps counting from its
 * last id while its clock stands still or steps back a little, but never runs
 * more than MAX_ID_AHEAD_MICROS ahead of its clock (see nextIdMicros).
 */
import { isRequestId, requestIdTimeMs, type IdSource } from '../queue/request-id.js';
import { readDeviceInto } from './fs.js';

export { REQUEST_ID_PATTERN, REQUEST_ID_LENGTH, isRequestId, requestIdTimeMs, type IdSource } from '../queue/request-id.js';

/** Digits of an id's timestamp (the queue's id format). */
const TIMESTAMP_DIGITS = 16;
/**
 * How far ahead of its clock a generator's ids may run (5 s, in µs). Within
 * it, a clock that stands still or steps back keeps the generator's ids in
 * order; past it (one reading far ahead, then the true time), ids follow the
 * clock again, so one bad reading does not put every later id behind the queue.
 */
export const MAX_ID_AHEAD_MICROS = 5_000_000;
const SUFFIX_BYTES = 6;

/**
 * An id more than this far ahead of the server's clock (1 minute) is logged
 * when admitted: its client's clock is wrong, and the request waits behind
 * every request with an earlier id, however much later they arrive.
 */
export const FAR_FUTURE_ID_MS = 60_000;

/** How far (ms) an id's time is ahead of `nowMs`, when more than FAR_FUTURE_ID_MS; else undefined (pure). */
export function farFutureByMs(id: string, nowMs: number): number | undefined {
  const aheadMs = requestIdTimeMs(id) - nowMs;
  return aheadMs > FAR_FUTURE_ID_MS ? aheadMs : undefined;
}

/**
 * Random bytes drawn in blocks from the kernel's CSPRNG: one read per 680 ids.
 * Suffixes must be unpredictable (in a shared spool, a predictable id could be
 * aborted before it is enqueued). /dev/urandom rather than node:crypto, whose
 * loading costs a CLI call several milliseconds.
 */
const RANDOM_BLOCK = 4080;
let randomPool = Buffer.alloc(0);
let randomOffset = 0;
const RANDOM_DEVICE = '/dev/urandom';
function fillRandom(buffer: Buffer): void {
  readDeviceInto(RANDOM_DEVICE, buffer);
}
function randomHex(bytes: number): string {
  if (randomOffset + bytes > randomPool.length) {
    randomPool = Buffer.allocUnsafe(RANDOM_BLOCK);
    fillRandom(randomPool);
    randomOffset = 0;
  }
  const hex = randomPool.toString('hex', randomOffset, randomOffset + bytes);
  randomOffset += bytes;
  return hex;
}

export const systemIdSource: IdSource = {
  // Wall-clock milliseconds (so ids from different processes interleave by time)
  // plus a sub-millisecond part from the monotonic clock (process.hrtime: the
  // global `performance` would load perf_hooks into every `wq` call).
  nowMicros: () => Date.now() * 1000 + (Math.floor(process.hrtime()[1] / 1000) % 1000),
  suffix: () => randomHex(SUFFIX_BYTES),
  randomSuffix: true,
};

/**
 * The timestamp of a generator's next id, given its last one and the clock
 * now (µs; pure). The clock if it moved forward; else one more than the last
 * id, as long as that stays within MAX_ID_AHEAD_MICROS of the clock; else (the
 * last id was far ahead: a clock reading far in the future, or a big step
 * back) the clock again. So an id is never more than MAX_ID_AHEAD_MICROS
 * ahead of the clock it was made by, and a generator's ids keep their order
 * across any step back smaller than that.
 */
export function nextIdMicros(lastMicros: number, nowMicros: number): number {
  if (nowMicros > lastMicros) return nowMicros;
  if (lastMicros + 1 - nowMicros <= MAX_ID_AHEAD_MICROS) return lastMicros + 1; // same microsecond, or a small step back
  return nowMicros;
}

/**
 * Makes ids that sort in the order this generator made them, unless its clock
 * steps back by more than MAX_ID_AHEAD_MICROS (then they follow the clock).
 */
export class RequestIdGenerator {
  #last = 0;
  readonly #source: IdSource;

  constructor(source: IdSource = systemIdSource) {
    this.#source = source;
  }

  /** Whether this generator's suffixes are random (IdSource.randomSuffix). */
  get randomSuffix(): boolean {
    return this.#source.randomSuffix === true;
  }

  next(): string {
    const micros = nextIdMicros(this.#last, this.#source.nowMicros());
    this.#last = micros;
    return formatRequestId(micros, this.#source.suffix());
  }
}

export function formatRequestId(micros: number, suffix: string): string {
  const id = `${String(micros).padStart(TIMESTAMP_DIGITS, '0')}-${suffix}`;
  if (!isRequestId(id)) throw new RangeError(`cannot make a request id from ${micros} and ${JSON.stringify(suffix)}`);
  return id;
}
