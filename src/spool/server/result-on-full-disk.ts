/**
 * What a full disk leaves of a result too large to fit on it: a small error
 * result with the same id and timings (pure; the server writes it in place of
 * the large one, after removing the request's logs to free space), and when it
 * gives up on the large one: only once the disk has stayed full for a few
 * attempts, so that a disk another process filled for a moment costs a delay,
 * not a good result.
 */
import { ProtocolError, type SerializedError } from '../../errors.js';
import { decodeResult, encodeResult } from '../codec.js';
import { formatBytes } from '../../task-manager/output-budget.js';

/** Results up to this size wait for a full disk to free up; larger ones are swapped once it stays full. */
export const SMALL_RESULT_BYTES = 64 * 1024;
/** Attempts a full disk must refuse a large result (about a second apart) before it is swapped. */
export const NO_SPACE_ATTEMPTS_BEFORE_SHRINK = 3;

/** Whether a result of `bytes` that a full disk refused `failures` times in a row is to be swapped for a small one. */
export function shouldShrinkOnFullDisk(bytes: number, failures: number): boolean {
  return bytes > SMALL_RESULT_BYTES && failures >= NO_SPACE_ATTEMPTS_BEFORE_SHRINK;
}

/** The small error result to write instead of `bytes`; undefined if `bytes` is not a result. */
export function diskFullResult(bytes: Buffer): Buffer | undefined {
  let original;
  try {
    original = decodeResult(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return undefined;
    throw err;
  }
  const { v: _v, type: _type, value: _value, error: _error, logs: _logs, runTimeoutMs: _runTimeoutMs, ...kept } = original;
  const error: SerializedError = {
    name: 'DiskFullError',
    code: 'ERR_DISK_FULL',
    message: `the spool's disk is full: the request's result (${formatBytes(bytes.length)}) could not be written there; its output logs were removed to free space`,
  };
  return encodeResult({ ...kept, ok: false, status: 'error', error });
}
