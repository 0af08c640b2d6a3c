/**
 * A command result carries the first bytes of each stream inline; the whole
 * stream is in logs/<id>.stdout|.stderr until the result is claimed. The
 * claiming client reads a stream back from its log only when the log holds
 * exactly the bytes the result counts (inline + dropped) and begins with the
 * inline ones, and no longer than any server writes (MAX_OUTPUT_LIMIT_BYTES:
 * a longer count is a damaged or forged result, not one to allocate for);
 * otherwise the result keeps its `…Dropped` count: it was cut.
 */
import { isPlainObject } from './codec.js';
import { logPath, type SpoolPaths } from './layout.js';
import * as sfs from './fs.js';
import { MAX_OUTPUT_LIMIT_BYTES } from '../task-manager/output-budget.js';

const STREAMS = ['stdout', 'stderr'] as const;

/**
 * Replaces the inline part of each cut stream of a command value with the
 * whole stream from the request's log, and drops its `…Dropped` count. Values
 * that are not command results are left alone.
 */
export function completeOutputFromLogs(paths: SpoolPaths, id: string, value: unknown): void {
  if (!isPlainObject(value)) return;
  for (const stream of STREAMS) {
    const inline = value[stream];
    const dropped = value[`${stream}Dropped`];
    if (!(inline instanceof Uint8Array) || typeof dropped !== 'number' || dropped <= 0) continue;
    if (inline.length + dropped > MAX_OUTPUT_LIMIT_BYTES) continue;
    const whole = readWholeLog(logPath(paths, id, stream), inline.length + dropped);
    if (whole === undefined || !whole.subarray(0, inline.length).equals(inline)) continue;
    value[stream] = whole;
    delete value[`${stream}Dropped`];
  }
}

/** Whether a command value still counts output that is neither inline nor read back from its log. */
export function isOutputCut(value: unknown): boolean {
  return isPlainObject(value) && STREAMS.some((stream) => typeof value[`${stream}Dropped`] === 'number' && (value[`${stream}Dropped`] as number) > 0);
}

/**
 * The log if it holds exactly `bytes` bytes; undefined if it is missing,
 * shorter, longer, not a regular file, or cannot be read at all.
 */
function readWholeLog(path: string, bytes: number): Buffer | undefined {
  let whole: Buffer | undefined;
  try {
    whole = sfs.readEntry(path, bytes);
  } catch (err) {
    // Whatever the failure (planted, unreadable, EMFILE, larger than a Buffer
    // holds: RangeError), the result is already claimed and must not be lost
    // to it: the stream stays cut, and its caller is told so.
    if (isReadFailure(err)) return undefined;
    throw err;
  }
  return whole?.length === bytes ? whole : undefined;
}

/** Any error thrown by reading (not a non-Error throw, which would be a bug elsewhere). */
function isReadFailure(err: unknown): err is Error {
  return err instanceof Error;
}
