/** `wq enqueue`, `wq wait`, `wq abort`: the client side, and how results are printed. */
import { WorkQueueClient, type RequestResult } from '../client.js';
import { UnknownRequestError, WorkQueueCancelledError, WorkQueueTimeoutError } from '../errors.js';
import { spoolPaths } from '../spool/layout.js';
import { isOwnerGone, readLockOwner } from '../spool/lock.js';
import { isRequestId } from '../spool/request-id.js';
import { CliError, EXIT, printError, resolveSpool } from './common.js';

interface SpoolFlags {
  spool?: string;
}

export interface EnqueueFlags extends SpoolFlags {
  wait?: boolean;
  timeout?: number;
  data?: string;
}

export async function enqueue(argv: string[], flags: EnqueueFlags): Promise<void> {
  const body = requestBody(argv, flags);
  if (flags.timeout !== undefined && !flags.wait) throw new CliError('--timeout only makes sense with --wait', EXIT.usage);
  const spool = resolveSpool(flags.spool);
  const client = new WorkQueueClient({ spool });
  const id = await client.enqueue(body);
  warnIfNoServer(spool);
  if (!flags.wait) {
    process.stdout.write(`${id}\n`);
    return;
  }
  await waitAndPrint(client, id, flags.timeout);
}

export async function wait(id: string, flags: SpoolFlags & { timeout?: number }): Promise<void> {
  checkId(id);
  const client = new WorkQueueClient({ spool: resolveSpool(flags.spool) });
  await waitAndPrint(client, id, flags.timeout);
}

export async function abort(id: string, flags: SpoolFlags): Promise<void> {
  checkId(id);
  const client = new WorkQueueClient({ spool: resolveSpool(flags.spool) });
  const state = client.state(id);
  await client.abort(id, 'user');
  if (state === undefined) printError(`no request ${id} in the spool; the abort is kept in case it is still being enqueued`);
}

function requestBody(argv: string[], flags: EnqueueFlags): unknown {
  if (flags.data !== undefined) {
    if (argv.length > 0) throw new CliError('give either --data or a command after --, not both', EXIT.usage);
    try {
      return JSON.parse(flags.data) as unknown;
    } catch (err) {
      throw new CliError(`--data is not valid JSON: ${(err as Error).message}`, EXIT.usage);
    }
  }
  if (argv.length === 0) throw new CliError('nothing to run: give a command after --, or --data JSON', EXIT.usage);
  return { argv, cwd: process.cwd() };
}

function checkId(id: string): void {
  if (!isRequestId(id)) throw new CliError(`"${id}" is not a request id (they look like 1763830000000000-0123456789ab)`, EXIT.usage);
}

function warnIfNoServer(spool: string): void {
  const owner = readLockOwner(spoolPaths(spool));
  if (owner === undefined || isOwnerGone(owner)) {
    printError(`no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts`);
  }
}

async function waitAndPrint(client: WorkQueueClient, id: string, timeoutMs: number | undefined): Promise<void> {
  const controller = new AbortController();
  const onInterrupt = (): void => controller.abort();
  process.once('SIGINT', onInterrupt);
  let result: RequestResult;
  try {
    result = await client.waitForResult(id, { timeoutMs, signal: controller.signal });
  } catch (err) {
    if (err instanceof WorkQueueTimeoutError) throw new CliError(`timed out after ${err.timeoutMs / 1000} s waiting for ${id}; the request was aborted`, EXIT.timeout);
    if (err instanceof WorkQueueCancelledError) throw new CliError(`interrupted; request ${id} was aborted`, EXIT.interrupted);
    if (err instanceof UnknownRequestError) throw new CliError(err.message, EXIT.unknownId);
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
    client.close();
  }
  process.exitCode = printResult(result);
}

/** Prints a result the way a shell user expects; returns the exit code. */
export function printResult(result: RequestResult): number {
  if (!result.ok) {
    const e = result.error!;
    printError(`request ${result.id} failed: ${e.name}: ${e.message}`);
    return EXIT.failure;
  }
  const value = result.value;
  if (isCommandResult(value)) {
    process.stdout.write(value.stdout);
    process.stderr.write(value.stderr);
    if (value.stdoutDropped) printError(`${value.stdoutDropped} bytes of stdout past the 1 MiB cap were dropped`);
    if (value.stderrDropped) printError(`${value.stderrDropped} bytes of stderr past the 1 MiB cap were dropped`);
    if (value.exitCode !== null) return value.exitCode;
    return 128 + (signalNumber(value.signal) ?? 0);
  }
  if (value !== undefined) process.stdout.write(`${JSON.stringify(value, jsonBytes)}\n`);
  return EXIT.ok;
}

interface PrintableCommandResult {
  exitCode: number | null;
  signal: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  stdoutDropped?: number;
  stderrDropped?: number;
}

function isCommandResult(value: unknown): value is PrintableCommandResult {
  const v = value as PrintableCommandResult;
  return typeof v === 'object' && v !== null && 'exitCode' in v && v.stdout instanceof Uint8Array && v.stderr instanceof Uint8Array;
}

function signalNumber(signal: string | null): number | undefined {
  if (signal === null) return undefined;
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return table[signal];
}

/** Bytes in a handler's result print as base64 rather than a list of numbers. */
function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { base64: Buffer.from(value).toString('base64') } : value;
}
