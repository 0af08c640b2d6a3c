/** Sizes on the command line: `10M`, `1G`, `512K`, `1048576` (bytes; K, M, G are powers of 1024). */
import { outOfRange, type NumberRange } from './option-ranges.js';

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i;
const WHAT = 'a size (bytes, or with K, M, G: powers of 1024, as in 10M)';

/** Parses a size into bytes (a whole number >= 1). */
export function parseSize(value: string): number {
  return parseSizeIn({ what: WHAT, min: 1 })(value);
}

/** parseSize for an option with a most it takes (`maxBytes`, named in the message as `maxText`, e.g. "1G"). */
export function parseSizeAtMost(maxBytes: number, maxText: string): (value: string) => number {
  return parseSizeIn({ what: WHAT, min: 1, max: maxBytes, maxText });
}

function parseSizeIn(range: NumberRange): (value: string) => number {
  return (value) => {
    const match = SIZE.exec(value.trim());
    const bytes = match === null ? NaN : Math.floor(Number(match[1]) * UNITS[match[2]!.toUpperCase()]!);
    if (!(Number.isSafeInteger(bytes) && bytes >= range.min && (range.max === undefined || bytes <= range.max))) throw outOfRange(range, value);
    return bytes;
  };
}
