/**
 * What the crash-torture processes share: their configurations, the request
 * body clients send (with a pad whose bytes the handler can check, so a torn
 * request could not pass unnoticed), the record formats of the ledger and the
 * client logs, and a seeded PRNG so a run's plan can be replayed with `--seed`.
 */

/** A torture server's configuration (JSON in argv[2]). */
export interface TortureServerConfig {
  spool: string;
  /** Append-only file where the handler records each start, before the task runs. */
  ledger: string;
  /** This server's number in the run (1, 2, …): the ledger's first field. */
  lifetime: number;
  maxTasks: number;
  /** fsync requests' results before they count (`durable: true`). */
  durable: boolean;
  /** Log level of the server's stderr lines. */
  logLevel: 'debug' | 'info' | 'warn';
  /** Short intervals for the final housekeeping server; defaults otherwise. */
  housekeeping?: { resultTtlMs: number; leftoverMaxAgeMs: number; housekeepingIntervalMs: number; rescanIntervalMs: number };
}

/** A torture client's configuration (JSON in argv[2]). */
export interface TortureClientConfig {
  spool: string;
  /** Unique in the run; goes into every body, so a result can be traced to its client. */
  index: number;
  /**
   * `waiter`: enqueue one request, wait for its result, log both, repeat until the stop file exists.
   * `enqueuer`: enqueue large requests back to back without waiting (it is killed mid-enqueue).
   */
  kind: 'waiter' | 'enqueuer';
  /** Where the client appends its records (one JSON object a line). */
  log: string;
  /** Seeds this client's PRNG (work time, failures, pad sizes). */
  seed: number;
  /** A waiter finishes its current request and exits once this file exists. */
  stopFile: string;
  /** Enqueue with `durable: true` (fsync before publishing). */
  durable: boolean;
  /** An enqueuer's pad size; a waiter's pads are small and random. */
  padBytes: number;
  /** An enqueuer stops (exits) after this many requests, if it was not killed first. */
  maxRequests: number;
  /** Longest a task of this client works (ms). */
  maxWorkMs: number;
  /** Share of requests whose task throws (its error result must arrive like any other). */
  failRate: number;
}

/** What a client sends. The pad's every byte is padByte(c, s). */
export interface TortureBody {
  c: number;
  s: number;
  workMs: number;
  fail: boolean;
  padBytes: number;
  pad: Uint8Array;
}

/** What the handler returns (and a client checks). */
export interface TortureValue {
  id: string;
  c: number;
  s: number;
  lifetime: number;
}

export function padByte(client: number, seq: number): number {
  return (client * 31 + seq) & 0xff;
}

/** Whether a body is whole: every field present and every pad byte as sent. */
export function bodyIsWhole(body: unknown): body is TortureBody {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Partial<TortureBody>;
  if (typeof b.c !== 'number' || typeof b.s !== 'number' || typeof b.workMs !== 'number' || typeof b.fail !== 'boolean') return false;
  if (!(b.pad instanceof Uint8Array) || b.pad.length !== b.padBytes) return false;
  const expected = padByte(b.c, b.s);
  for (let i = 0; i < b.pad.length; i++) if (b.pad[i] !== expected) return false;
  return true;
}

/** The message of a planned task failure, naming the request and the run, as a value would. */
export function plannedFailureMessage(id: string, lifetime: number): string {
  return `planned failure of ${id} in lifetime ${lifetime}`;
}

/** The lifetime named by plannedFailureMessage() for `id`, or undefined if `message` is not one. */
export function plannedFailureLifetime(id: string, message: string | undefined): number | undefined {
  const m = /^planned failure of (\S+) in lifetime (\d+)$/.exec(message ?? '');
  return m !== null && m[1] === id ? Number(m[2]) : undefined;
}

/** One ledger line: `<lifetime> <id> <client>:<seq> <whole|torn>`, written before the task runs. */
export function ledgerLine(lifetime: number, id: string, body: unknown): string {
  const whole = bodyIsWhole(body);
  const b = body as Partial<TortureBody> | null;
  return `${lifetime} ${id} ${String(b?.c)}:${String(b?.s)} ${whole ? 'whole' : 'torn'}\n`;
}

/** A client log record. */
export type ClientRecord =
  /** enqueue() returned this id for seq `s`. */
  | { k: 'E'; id: string; s: number }
  /** A result was claimed: its status, and the value's fields or the error's message. */
  | { k: 'R'; id: string; s: number; status: string; value?: TortureValue; error?: string }
  /** wait() rejected: the request's result is lost to this client. */
  | { k: 'X'; id: string; s: number; error: string; code?: string }
  /** The client stopped cleanly. */
  | { k: 'D' };

/** sfc32: a small, fast PRNG with a 128-bit state, seeded from one 32-bit number. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#a >>>= 0;
    this.#b >>>= 0;
    this.#c >>>= 0;
    this.#d >>>= 0;
    let t = (this.#a + this.#b) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#d = (this.#d + 1) | 0;
    t = (t + this.#d) | 0;
    this.#c = (this.#c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A seed for a sub-stream (a client's PRNG), so each process draws its own reproducible numbers. */
  fork(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}
