/**
 * How `wq enqueue --wait` and `wq wait` report an outcome: the task's own
 * output and exit code for people and shell scripts, or one JSON object with
 * `--json`. Every outcome maps to one documented exit code. Output is never
 * cut silently: a result whose output was lost (past the server's limit, a
 * full disk, a log gone) exits 1 with a message that even `-q` prints.
 */
import { constants as osConstants } from 'node:os';
import type { RequestResult } from '../queue/types.js';
import type { CommandResult } from '../task-manager/command.js';
import { EXIT } from './common.js';
import { exitCodeForCause, type StopCause } from './stop.js';
import { inWrittenOrder } from '../task-manager/output-order.js';

export type Outcome =
  | { kind: 'result'; id: string; result: RequestResult }
  /** A deadline passed; the request was aborted, or with `left` (`wq wait --keep`) left alone. */
  | { kind: 'timeout'; id: string; deadline: 'total' | 'run'; timeoutMs: number; left?: boolean }
  | { kind: 'unknown'; id: string; message: string }
  /** A signal (or EPIPE) stopped the wait; the request was aborted, or with `detached` left queued. */
  | { kind: 'interrupted'; id: string; cause: StopCause; detached: boolean };

export interface RenderOptions {
  json: boolean;
  quiet: boolean;
  /** The command's output was already streamed (--follow): do not print it again. */
  streamed: boolean;
  /** stdout and stderr lead to the same file or terminal: print a command's two streams in the order they came. @default false */
  together?: boolean;
}

/**
 * Whether a result's value is a command's (CommandResult), told by its streams.
 * Only those are checked: `order`, read from the queue as it came, is used only
 * if it is valid (inWrittenOrder ignores anything else there).
 */
export function isCommandResult(value: unknown): value is CommandResult {
  const v = value as CommandResult;
  return typeof v === 'object' && v !== null && 'exitCode' in v && v.stdout instanceof Uint8Array && v.stderr instanceof Uint8Array;
}


/** Error codes of a request failed for its output: reported even under -q, since output was lost. */
const OUTPUT_LOST_CODES = new Set(['ERR_OUTPUT_LIMIT', 'ERR_DISK_FULL', 'ERR_OUTPUT_LOG']);

/** Bytes of a command's output that were not delivered (neither inline nor from its log), per stream. */
export function lostOutput(value: CommandResult): { stdout: number; stderr: number } {
  return { stdout: value.stdoutDropped ?? 0, stderr: value.stderrDropped ?? 0 };
}

/**
 * The exit code a shell would give: the command's own, 128+n for a signal, or
 * wq's; 1 when part of the output was lost (unless it was streamed whole).
 */
export function exitCodeOf(outcome: Outcome, streamed = false): number {
  switch (outcome.kind) {
    case 'timeout':
      return EXIT.timeout;
    case 'unknown':
      return EXIT.unknownId;
    case 'interrupted':
      return exitCodeForCause(outcome.cause);
    case 'result': {
      const { result } = outcome;
      if (result.status === 'timed_out') return EXIT.timeout;
      if (!result.ok) return EXIT.failure;
      if (!isCommandResult(result.value)) return EXIT.ok;
      const lost = lostOutput(result.value);
      if (!streamed && lost.stdout + lost.stderr > 0) return EXIT.failure;
      if (result.value.exitCode !== null) return result.value.exitCode;
      return 128 + ((osConstants.signals as Record<string, number>)[result.value.signal ?? ''] ?? 0);
    }
  }
}

/** Writes the outcome; returns the exit code. */
export function render(outcome: Outcome, options: RenderOptions, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  const code = exitCodeOf(outcome, options.streamed);
  if (options.json) return writeJson(outcome, code, out, err);
  const say = (message: string, evenIfQuiet = false): void => {
    if (!options.quiet || evenIfQuiet) err.write(`wq: ${message}\n`);
  };
  switch (outcome.kind) {
    case 'timeout':
      say(
        outcome.deadline === 'run'
          ? `request ${outcome.id} ran longer than its run timeout (--run-timeout ${outcome.timeoutMs / 1000} s); it was terminated`
          : `timed out after ${outcome.timeoutMs / 1000} s (--timeout) waiting for ${outcome.id}; the request was ${outcome.left === true ? 'left in the spool (--keep)' : 'aborted'}`,
      );
      return code;
    case 'unknown':
      say(outcome.message);
      return code;
    case 'interrupted':
      // A detached request's id is printed even with --quiet: without it, nobody can collect the result.
      if (outcome.detached) err.write(`wq: stopped waiting (${outcome.cause}); request ${outcome.id} was left in the spool: collect it with \`wq wait ${outcome.id}\`\n`);
      else say(`aborted request ${outcome.id} (${outcome.cause})`);
      return code;
    case 'result':
      break;
  }
  const { result } = outcome;
  if (result.status === 'timed_out') {
    writeCommandOutput(result.value, options, out, err);
    say(`request ${result.id} ran longer than its run timeout (--run-timeout ${(result.runTimeoutMs ?? 0) / 1000} s); it was terminated`);
    return code;
  }
  if (!result.ok) {
    say(`request ${result.id} failed: ${result.error!.name}: ${result.error!.message}`, OUTPUT_LOST_CODES.has(result.error!.code ?? ''));
    return code;
  }
  if (isCommandResult(result.value)) {
    writeCommandOutput(result.value, options, out, err);
    if (!options.streamed) {
      const lost = lostOutput(result.value);
      for (const stream of ['stdout', 'stderr'] as const) {
        if (lost[stream] > 0) say(`the output was cut: the last ${lost[stream]} bytes of ${stream} were lost (its log in the spool is gone or incomplete); exit ${EXIT.failure}`, true);
      }
    }
    if (result.value.signal !== null) say(`the command was killed by ${result.value.signal}`);
  } else if (result.value !== undefined) {
    out.write(`${JSON.stringify(result.value, jsonBytes)}\n`);
  }
  return code;
}

/** What --json keeps, per stream, of output too long for one JSON string. */
const JSON_CUT_BYTES = 1024 * 1024;

/**
 * The --json line. Output too long for one JavaScript string (about 512 Mi
 * characters with its escapes) is cut to its first MiB per stream, the rest
 * counted in `stdoutDropped`/`stderrDropped`, and said so (exit 1): the result
 * is already claimed and must not be lost to a RangeError.
 */
function writeJson(outcome: Outcome, code: number, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  let line: string;
  try {
    line = JSON.stringify(toJson(outcome, code), jsonBytes);
  } catch (e) {
    if (!isStringTooLong(e) || outcome.kind !== 'result' || !isCommandResult(outcome.result.value)) throw e;
    const v = outcome.result.value;
    const value = { ...v, stdout: v.stdout.subarray(0, JSON_CUT_BYTES), stderr: v.stderr.subarray(0, JSON_CUT_BYTES) };
    for (const stream of ['stdout', 'stderr'] as const) {
      const lost = v[stream].length - value[stream].length;
      if (lost > 0) value[`${stream}Dropped`] = (v[`${stream}Dropped`] ?? 0) + lost;
    }
    line = JSON.stringify(toJson({ ...outcome, result: { ...outcome.result, value } }, EXIT.failure), jsonBytes);
    err.write(`wq: the output was too long for --json (one JSON string): only its first MiB per stream is printed, the rest counted in stdoutDropped/stderrDropped; exit ${EXIT.failure}\n`);
    code = EXIT.failure;
  }
  out.write(`${line}\n`);
  return code;
}

/** V8's "Invalid string length" (RangeError), or Node's ERR_STRING_TOO_LONG from Buffer#toString. */
function isStringTooLong(err: unknown): boolean {
  return err instanceof RangeError || (err instanceof Error && (err as NodeJS.ErrnoException).code === 'ERR_STRING_TOO_LONG');
}

function writeCommandOutput(value: unknown, options: RenderOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): void {
  if (options.streamed || !isCommandResult(value)) return;
  if (options.together !== true) {
    out.write(value.stdout);
    err.write(value.stderr);
    return;
  }
  for (const [stream, bytes] of inWrittenOrder(value.stdout, value.stderr, value.order)) (stream === 'stdout' ? out : err).write(bytes);
}

/** The `--json` object: one per outcome, stable keys. */
export function toJson(outcome: Outcome, exitCode: number): Record<string, unknown> {
  const base = { id: outcome.id, exitCode };
  switch (outcome.kind) {
    case 'timeout':
      return { ...base, ok: false, status: 'timed_out', deadline: outcome.deadline, error: { name: 'WorkQueueTimeoutError', message: `${outcome.deadline} timeout of ${outcome.timeoutMs / 1000} s expired`, code: 'ERR_TIMEOUT' } };
    case 'unknown':
      return { ...base, ok: false, status: 'unknown', error: { name: 'UnknownRequestError', message: outcome.message, code: 'ERR_UNKNOWN_REQUEST' } };
    case 'interrupted':
      return {
        ...base,
        ok: false,
        status: 'interrupted',
        signal: outcome.cause,
        error: { name: 'WorkQueueCancelledError', message: `${outcome.cause}: the request was ${outcome.detached ? 'left queued' : 'aborted'}`, code: 'ERR_CANCELLED' },
      };
    case 'result': {
      const { result } = outcome;
      const json: Record<string, unknown> = { ...base, ok: result.ok, status: result.status };
      if (result.status === 'timed_out') json.deadline = 'run';
      if (result.error !== undefined) json.error = { name: result.error.name, message: result.error.message, ...(result.error.code === undefined ? {} : { code: result.error.code }) };
      if (isCommandResult(result.value)) {
        const v = result.value;
        Object.assign(json, { signal: v.signal, stdout: text(v.stdout), stderr: text(v.stderr) });
        if (v.stdoutDropped) json.stdoutDropped = v.stdoutDropped;
        if (v.stderrDropped) json.stderrDropped = v.stderrDropped;
      } else if (result.ok) {
        json.result = result.value ?? null;
      }
      for (const key of ['queuedAt', 'startedAt', 'finishedAt'] as const) if (result[key] !== undefined) json[key] = new Date(result[key]).toISOString();
      return json;
    }
  }
}

/** Output as UTF-8 text when it is valid UTF-8, else base64 in an object. */
function text(bytes: Uint8Array): string | { base64: string } {
  const buffer = Buffer.from(bytes);
  const decoded = buffer.toString('utf8');
  return Buffer.from(decoded, 'utf8').equals(buffer) ? decoded : { base64: buffer.toString('base64') };
}

/** Bytes in a handler's result print as base64 rather than a list of numbers. */
export function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { base64: Buffer.from(value).toString('base64') } : value;
}
