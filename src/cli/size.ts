/** Sizes on the command line: `10M`, `1G`, `512K`, `1048576` (bytes; K, M, G are powers of 1024). */
import { InvalidArgumentError } from './commander.js';

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i;

/** Parses a size into bytes (a whole number >= 1). */
export function parseSize(value: string): number {
  const match = SIZE.exec(value.trim());
  const bytes = match === null ? NaN : Math.floor(Number(match[1]) * UNITS[match[2]!.toUpperCase()]!);
  if (!(Number.isSafeInteger(bytes) && bytes >= 1)) {
    throw new InvalidArgumentError(`expected a size such as 10M, 1G or 1048576 (bytes; K, M, G are powers of 1024), got "${value}"`);
  }
  return bytes;
}

/** parseSize for an option with a most it takes (`maxBytes`, named in the message as `maxText`, e.g. "1G"). */
export function parseSizeAtMost(maxBytes: number, maxText: string): (value: string) => number {
  return (value) => {
    const bytes = parseSize(value);
    if (bytes > maxBytes) throw new InvalidArgumentError(`expected a size of at most ${maxText}, got "${value}"`);
    return bytes;
  };
}
