/** `wq enqueue`, `wq wait`, `wq abort`: the client side of the CLI. */
import { Writable } from 'node:stream';
import { WorkQueueClient, type RequestResult } from '../client.js';
import { UnknownRequestError, WorkQueueCancelledError, WorkQueueTimeoutError } from '../errors.js';
import { spoolPaths } from '../spool/layout.js';
import { isServing, readLockOwner } from '../spool/lock.js';
import { isRequestId } from '../spool/request-id.js';
import { CliError, clientLogger, EXIT, printError, resolveSpool } from './common.js';
import { render, type Outcome } from './output.js';
import { StopListener } from './stop.js';

interface SpoolFlags {
  spool?: string;
}

export interface WaitFlags extends SpoolFlags {
  timeout?: number;
  follow?: boolean;
  json?: boolean;
  quiet?: boolean;
  detachOnSignal?: boolean;
}

export interface EnqueueFlags extends WaitFlags {
  wait?: boolean;
  runTimeout?: number;
  data?: string;
  durable?: boolean;
}

export async function enqueue(argv: string[], flags: EnqueueFlags): Promise<void> {
  const body = requestBody(argv, flags);
  for (const [flag, set] of [['--timeout', flags.timeout !== undefined], ['--follow', flags.follow]] as const) {
    if (set && !flags.wait) throw new CliError(`${flag} only makes sense with --wait`, EXIT.usage);
  }
  checkFollowJson(flags);
  if (flags.detachOnSignal && !flags.wait) throw new CliError('--detach-on-signal only makes sense with --wait', EXIT.usage);
  const spool = resolveSpool(flags.spool);
  const client = new WorkQueueClient({ spool, durable: flags.durable === true, logger: clientLogger(flags.quiet) });
  // Listening before the request is published: from then on a signal stops the wait, never kills wq.
  const stops = flags.wait ? new StopListener() : undefined;
  try {
    const id = await client.enqueue(body, { runTimeoutMs: flags.runTimeout });
    if (!flags.quiet) warnIfNoServer(spool);
    if (stops === undefined) {
      process.stdout.write(flags.json ? `${JSON.stringify({ id })}\n` : `${id}\n`);
      return;
    }
    await waitAndReport(client, spool, id, flags, stops);
  } finally {
    stops?.close();
  }
}

export async function wait(id: string, flags: WaitFlags): Promise<void> {
  checkId(id);
  checkFollowJson(flags);
  const spool = resolveSpool(flags.spool);
  const stops = new StopListener();
  try {
    await waitAndReport(new WorkQueueClient({ spool, logger: clientLogger(flags.quiet) }), spool, id, flags, stops);
  } finally {
    stops.close();
  }
}

export async function abort(id: string, flags: SpoolFlags & { quiet?: boolean }): Promise<void> {
  checkId(id);
  const client = new WorkQueueClient({ spool: resolveSpool(flags.spool) });
  const state = client.state(id);
  await client.abort(id, 'user');
  if (state === undefined && !flags.quiet) printError(`no request ${id} in the spool; the abort is kept for 10 minutes in case it is still being enqueued`);
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

function checkFollowJson(flags: WaitFlags): void {
  if (flags.follow && flags.json) throw new CliError('--follow streams the output as it comes; --json prints it once at the end: pick one', EXIT.usage);
}

function checkId(id: string): void {
  if (!isRequestId(id)) throw new CliError(`"${id}" is not a request id (they look like 1763830000000000-0123456789ab)`, EXIT.usage);
}

function warnIfNoServer(spool: string): void {
  const paths = spoolPaths(spool);
  if (!isServing(paths, readLockOwner(paths))) {
    printError(`no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts`);
  }
}

/** Waits (with live status and --follow as asked), prints the outcome, sets the exit code. */
async function waitAndReport(client: WorkQueueClient, spool: string, id: string, flags: WaitFlags, stops: StopListener): Promise<void> {
  const showLine = process.stderr.isTTY === true && !flags.quiet && !flags.json;
  const line = showLine ? (await import('./progress.js')).startLiveLine(spool, id) : undefined;
  const around = (write: () => void): void => (line ? line.around(write) : write());
  const follower = flags.follow
    ? (await import('./follow.js')).followLogs(spool, id, {
        stdout: (chunk) => {
          if (stops.outputOpen) around(() => process.stdout.write(chunk)); // else its reader went away: the wait is stopping
        },
        stderr: (chunk) => {
          if (stops.outputOpen) around(() => process.stderr.write(chunk));
        },
      }, (attempt) => {
        if (!flags.quiet) around(() => printError(`request ${id} is running again (attempt ${attempt})`));
      })
    : undefined;
  let outcome: Outcome;
  try {
    const result: RequestResult = await client.waitForResult(id, {
      timeoutMs: flags.timeout,
      signal: stops.signal,
      abortOnCancel: flags.detachOnSignal !== true,
      keepLogs: follower !== undefined,
    });
    outcome = { kind: 'result', id, result };
  } catch (err) {
    if (err instanceof WorkQueueTimeoutError) outcome = { kind: 'timeout', id, deadline: err.deadline, timeoutMs: err.timeoutMs };
    else if (err instanceof WorkQueueCancelledError) outcome = { kind: 'interrupted', id, cause: stops.cause ?? 'SIGINT', detached: !err.requestAborted };
    else if (err instanceof UnknownRequestError) outcome = { kind: 'unknown', id, message: err.message };
    else throw err;
  } finally {
    stops.close();
    await follower?.finish();
    line?.stop();
    client.close();
  }
  // A detached request still runs: its logs are its own.
  if (follower !== undefined && !(outcome.kind === 'interrupted' && outcome.detached)) client.removeRequestLogs(id);
  const out = stops.outputOpen ? process.stdout : new Writable({ write: (_chunk, _encoding, done) => done() });
  process.exitCode = render(outcome, { json: flags.json === true, quiet: flags.quiet === true, streamed: follower?.sawLogs === true }, out);
}
