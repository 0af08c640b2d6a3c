/**
 * Numeric options: each states its range once, as plain data, and every one
 * is refused with the same message, `expected <what> <range>, got "<value>"`
 * (commander puts the option's name in front).
 */
import { InvalidArgumentError } from './commander.js';

/** What a numeric option accepts. */
export interface NumberRange {
  /** What it takes, for the message: "a number of seconds", "a whole number". */
  what: string;
  min: number;
  /** Only values above `min`, not `min` itself. @default false */
  minExclusive?: boolean;
  /** @default no limit but the type's */
  max?: number;
  /** How `min` and `max` read in the message, when not as plain numbers (sizes: "1G"). */
  minText?: string;
  maxText?: string;
}

/** The range as the message says it: "from 1 to 65535", ">= 0", "> 0". */
export function rangeText(range: NumberRange): string {
  const min = range.minText ?? String(range.min);
  if (range.max === undefined) return `${range.minExclusive ? '>' : '>='} ${min}`;
  const max = range.maxText ?? String(range.max);
  return range.minExclusive ? `> ${min} and <= ${max}` : `from ${min} to ${max}`;
}

/** The one message for a numeric option's value that is not a number in its range. */
export function outOfRange(range: NumberRange, value: string): InvalidArgumentError {
  return new InvalidArgumentError(`expected ${range.what} ${rangeText(range)}, got "${value}"`);
}

export function inRange(n: number, range: NumberRange): boolean {
  return Number.isFinite(n) && (range.minExclusive ? n > range.min : n >= range.min) && (range.max === undefined || n <= range.max);
}

/** A plain decimal number: no sign, hex, words or blanks ("1e3" and ".5" are fine). */
const DECIMAL = /^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A number (fractions allowed) within `range`. */
export function parseNumberIn(range: NumberRange): (value: string) => number {
  return (value) => {
    const n = DECIMAL.test(value) ? Number(value) : NaN;
    if (!inRange(n, range)) throw outOfRange(range, value);
    return n;
  };
}

/** A whole number within `range` (`what` defaults to "a whole number"). */
export function parseWholeNumberIn(range: Omit<NumberRange, 'what'> & { what?: string }): (value: string) => number {
  const shown: NumberRange = { what: 'a whole number', ...range };
  const full: NumberRange = { ...shown, max: range.max ?? Number.MAX_SAFE_INTEGER };
  return (value) => {
    const n = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!inRange(n, full)) throw outOfRange(shown, value);
    return n;
  };
}

/** The longest duration an option takes, in seconds: its milliseconds must stay exact integers. */
const MAX_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);

/**
 * A duration given in seconds (fractions allowed), returned in milliseconds.
 * `min` and `max` are in seconds; a value that rounds to fewer milliseconds
 * than `min` allows is refused too.
 */
export function parseSecondsIn(range: Omit<NumberRange, 'what'>): (value: string) => number {
  const shown: NumberRange = { what: 'a number of seconds', ...range };
  const full: NumberRange = { ...shown, max: range.max ?? MAX_SECONDS };
  return (value) => {
    const seconds = DECIMAL.test(value) ? Number(value) : NaN;
    const ms = Math.round(seconds * 1000);
    if (!inRange(seconds, full) || !inRange(ms / 1000, full)) throw outOfRange(shown, value);
    return ms;
  };
}
