/**
 * How much output a command task may write, and how it fails when it cannot.
 * A task's output (stdout and stderr together) is counted as it comes against
 * the server's limit; past it, or when its log cannot be written (a full disk),
 * the task is stopped and its request fails with an error naming the cause.
 * So output is never silently cut: a client gets all of it, or an error.
 */
import { DiskFullError, isErrno, OutputLimitError, serializeError, WorkQueueError, type SerializedError } from '../errors.js';

/** Output a command may write, stdout and stderr together (the server's `--max-output`). */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/**
 * The most `maxOutputBytes` (`--max-output`) may be: 1 GiB. A client holds a
 * stream whole in memory and reads its log in one Buffer (at most 4 GiB), and
 * `--json` puts it in one string (V8: at most ~512 Mi characters, before escapes).
 */
export const MAX_OUTPUT_LIMIT_BYTES = 2 ** 30;
/** Output carried in the result envelope itself, per stream; the rest is read from logs/. */
export const DEFAULT_INLINE_OUTPUT_BYTES = 1024 * 1024;

/** Counts a task's output against its limit. */
export class OutputBudget {
  #used = 0;
  constructor(readonly limitBytes: number) {}

  /** Counts `bytes` more; false once the total is past the limit. */
  take(bytes: number): boolean {
    this.#used += bytes;
    return this.#used <= this.limitBytes;
  }
}

/** The error of a task stopped at the output limit. */
export function outputLimitFailure(limitBytes: number): SerializedError {
  return plainError(
    new OutputLimitError(`the command wrote more than ${formatBytes(limitBytes)} of output, the server's limit (maxOutputBytes, wq serve --max-output); it was stopped`),
  );
}

/** The error of a task stopped because its output log could not be written. */
export function logWriteFailure(err: unknown): SerializedError {
  if (isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT')) {
    return plainError(new DiskFullError(`the spool's disk is full (${err.code}): the command's output could not be written to logs/; it was stopped and its logs removed`));
  }
  const reason = err instanceof Error ? err.message : String(err);
  return plainError(new WorkQueueError(`the command's output could not be written to logs/ (${reason}); it was stopped and its logs removed`, 'ERR_OUTPUT_LOG'));
}

/** A byte count as people read it: 1 MiB, 64 MiB, 1.5 GiB, 1000 bytes. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))} ${unit}`;
  }
  return `${bytes} bytes`;
}

/** A server-side stack says nothing useful to the client: only name, message and code travel. */
function plainError(err: Error): SerializedError {
  const { stack: _stack, ...rest } = serializeError(err);
  return rest;
}
