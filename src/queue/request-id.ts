/**
 * Request ids, the same on every backend: `<16-digit microseconds since the
 * epoch>-<12 hex digits>`. Fixed width, so lexical order is arrival order (the
 * server's FIFO order); the random suffix keeps two clients in the same
 * microsecond apart. Pure: the generator lives with the spool.
 */

export const REQUEST_ID_PATTERN = /^\d{16}-[0-9a-f]{12}$/;
export const REQUEST_ID_LENGTH = 29;
const TIMESTAMP_DIGITS = 16;

export function isRequestId(name: string): boolean {
  return name.length === REQUEST_ID_LENGTH && REQUEST_ID_PATTERN.test(name);
}

/** The microsecond timestamp an id was made with (the client's clock). */
export function requestIdTimeMs(id: string): number {
  return Number(id.slice(0, TIMESTAMP_DIGITS)) / 1000;
}

/** Sources of time and randomness, injectable so tests can force collisions and clock steps. */
export interface IdSource {
  /** Current time in microseconds since the epoch. */
  nowMicros(): number;
  /** A suffix of 12 lowercase hex digits. */
  suffix(): string;
  /**
   * True when suffixes are 48 bits from a CSPRNG. Another request with the
   * same id could then exist only if those bits repeated in the same
   * microsecond (about 1 in 2.8e14 for two ids of one microsecond), so the
   * client does not look for one past requested/ (see docs/protocol.md).
   * @default false
   */
  randomSuffix?: boolean;
}
