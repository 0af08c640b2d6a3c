/** Helpers shared by the `resolve…Options()` functions. */
import { InvalidOptionError } from './errors.js';

/** Drops keys whose value is undefined, so a spread of defaults is not overwritten by them. */
export function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Throws the one InvalidOptionError message for a duration unless it is a
 * finite number of ms >= `min` (and <= `max`, for a period a plain timer must hold).
 */
export function assertDurationMs(key: string, value: unknown, min = 0, max = Number.POSITIVE_INFINITY): void {
  if (!(typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max)) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `>= ${min} and <= ${max}`;
    throw new InvalidOptionError(`Expected \`${key}\` to be a finite number ${range}, got \`${String(value)}\` (${typeof value})`);
  }
}
