/**
 * What a full disk leaves of a result too large to fit on it: a small error
 * result with the same id and timings (pure; the server writes it in place of
 * the large one, after removing the request's logs to free space).
 */
import { ProtocolError, type SerializedError } from './errors.js';
import { decodeResult, encodeResult } from './spool/codec.js';
import { formatBytes } from './task-manager/output-budget.js';

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
