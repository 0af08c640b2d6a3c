/** `wq enqueue`, `wq wait`, `wq abort`: the client side of the CLI. */
import { Writable } from 'node:stream';
import { WorkQueueClient, type WaitOptions } from '../client.js';
import { AbortRefusedError, RequestTooLargeError, UnknownRequestError, WorkQueueCancelledError, WorkQueueTimeoutError } from '../errors.js';
import type { OutputFollower, OutputSinks, QueueBackend } from '../queue/backend.js';
import { isRequestId } from '../queue/request-id.js';
import { isRedisAddress } from '../queue/address.js';
import { MAX_REQUEST_BYTES, type AbortOutcome, type RequestResult } from '../queue/types.js';
import type { TaskInput } from '../task-input.js';
import type { CommandRequest } from '../task-manager/command.js';
import { CliError, clientLogger, EXIT, printError, resolveQueue } from './common.js';
import { dataFromFlag, describeBytes, envFromFlags, readStandardInput } from './input.js';
import { render, type Outcome } from './output.js';
import { exitCodeForCause, StopListener } from './stop.js';
import { sameFile } from './streams.js';

interface SpoolFlags {
  spool?: string;
  /** `--queue redis://…`: a queue on Redis instead of a spool. */
  queue?: string;
}

export interface WaitFlags extends SpoolFlags {
  timeout?: number;
  follow?: boolean;
  json?: boolean;
  quiet?: boolean;
  detachOnSignal?: boolean;
  keep?: boolean;
}

export interface AbortFlags extends SpoolFlags {
  quiet?: boolean;
  all?: boolean;
}

export interface EnqueueFlags extends WaitFlags {
  wait?: boolean;
  runTimeout?: number;
  data?: string;
  durable?: boolean;
  /** `--env NAME[=VALUE]`, in order. */
  env?: string[];
  envAll?: boolean;
  stdin?: boolean;
}

export async function enqueue(argv: string[], flags: EnqueueFlags): Promise<void> {
  checkRequestFlags(argv, flags);
  for (const [flag, set] of [['--timeout', flags.timeout !== undefined], ['--follow', flags.follow]] as const) {
    if (set && !flags.wait) throw new CliError(`${flag} only makes sense with --wait`, EXIT.usage);
  }
  checkFollowJson(flags);
  if (flags.detachOnSignal && !flags.wait) throw new CliError('--detach-on-signal only makes sense with --wait', EXIT.usage);
  const input: TaskInput = envFromFlags(flags.env, flags.envAll === true, process.env);
  const body = flags.data === undefined ? commandBody(argv, flags) : await dataFromFlag(flags.data);
  if (flags.stdin) input.stdin = await readStandardInput('--stdin', MAX_REQUEST_BYTES);
  const where = resolveQueue(flags);
  if (flags.durable && where.queue !== undefined) throw new CliError('--durable is for a spool; on Redis, durability is the Redis server\'s (appendonly, see docs/scale-out.md)', EXIT.usage);
  const client = new WorkQueueClient({ ...where, durable: flags.durable === true, logger: clientLogger(flags.quiet) });
  // Listening before the request is published: from then on a signal stops the wait, never kills wq.
  const stops = flags.wait ? new StopListener() : undefined;
  try {
    const id = await enqueueOrSayWhy(client, body, { runTimeoutMs: flags.runTimeout, ...input });
    if (!flags.quiet) await warnIfNoServer(client.queue);
    if (stops === undefined) {
      client.close();
      process.stdout.write(flags.json ? `${JSON.stringify({ id })}\n` : `${id}\n`);
      return;
    }
    await waitAndReport(client, id, flags, stops);
  } finally {
    stops?.close();
    client.close(); // a queue on Redis lets its connections go (the process can exit); again, it does nothing
  }
}

export async function wait(ids: string[], flags: WaitFlags): Promise<void> {
  for (const id of ids) checkId(id);
  const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
  if (repeated !== undefined) throw new CliError(`request ${repeated} is given twice`, EXIT.usage);
  if (flags.follow && ids.length > 1) throw new CliError('--follow streams the output of one request: give one id', EXIT.usage);
  checkFollowJson(flags);
  const where = resolveQueue(flags);
  const stops = new StopListener();
  try {
    const client = new WorkQueueClient({ ...where, logger: clientLogger(flags.quiet) });
    // A result waits for no server; a request without one would wait for ever, unannounced.
    if (!flags.quiet) await warnIfUnserved(client.queue, ids);
    try {
      if (ids.length === 1) await waitAndReport(client, ids[0]!, flags, stops);
      else await waitForEach(client, ids, flags, stops);
    } finally {
      client.close();
    }
  } finally {
    stops.close();
  }
}

export async function abort(ids: string[], flags: AbortFlags): Promise<void> {
  if (flags.all) {
    if (ids.length > 0) throw new CliError('give request ids or --all, not both', EXIT.usage);
    const client = new WorkQueueClient(resolveQueue(flags));
    let aborted: string[];
    try {
      aborted = await client.abortAll('user');
    } finally {
      client.close();
    }
    if (aborted.length > 0) process.stdout.write(`${aborted.join('\n')}\n`);
    return;
  }
  if (ids.length === 0) throw new CliError('give the id of a request to abort, or --all for all of yours', EXIT.usage);
  for (const id of ids) checkId(id);
  const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
  if (repeated !== undefined) throw new CliError(`request ${repeated} is given twice`, EXIT.usage);
  const client = new WorkQueueClient(resolveQueue(flags));
  let settled: Array<PromiseSettledResult<AbortOutcome>>;
  try {
    // Filed and followed all at once; reported in the order given.
    settled = await Promise.allSettled(ids.map((id) => client.abortAndConfirm(id, { timeoutMs: ABORT_CONFIRM_MS })));
  } finally {
    client.close();
  }
  let exitCode: number = EXIT.ok;
  let noServerSaid = false;
  for (const [i, id] of ids.entries()) {
    const done = settled[i]!;
    let code: number = EXIT.ok;
    if (done.status === 'rejected') {
      if (!(done.reason instanceof AbortRefusedError)) throw done.reason;
      printError(done.reason.message); // even with --quiet: the request carries on
      code = EXIT.failure;
    } else if (done.value === 'unknown') {
      if (!flags.quiet) printError(notInQueue(client.queue, id));
      code = EXIT.unknownId;
    } else if (done.value === 'filed') {
      if (!flags.quiet && !noServerSaid) printError(`no server is running on ${where(client.queue)}; ${ids.length > 1 ? 'the aborts take' : `the abort of ${id} takes`} effect when \`wq serve\` starts`);
      noServerSaid = true;
    } else if (done.value === 'unconfirmed') {
      printError(`the abort of ${id} is filed, but the server did not act on it within ${ABORT_CONFIRM_MS / 1000} s (see wq status)`);
      code = EXIT.failure;
    }
    if (exitCode === EXIT.ok) exitCode = code;
  }
  process.exitCode = exitCode;
}

/** How long `wq abort` waits for the server to carry out (or refuse) an abort. */
const ABORT_CONFIRM_MS = 10_000;

function notInQueue(queue: QueueBackend, id: string): string {
  return `no request ${id} in the ${isRedisAddress(queue.location) ? 'queue' : 'spool'}; the abort is kept for 10 minutes in case it is still being enqueued`;
}

/** "spool DIR", or "queue redis://…": where a message says the queue is. */
function where(queue: QueueBackend): string {
  return `${isRedisAddress(queue.location) ? 'queue' : 'spool'} ${queue.location}`;
}

/** What can be told wrong from the flags alone, before anything is read. */
function checkRequestFlags(argv: string[], flags: EnqueueFlags): void {
  if (flags.data !== undefined) {
    if (argv.length > 0) throw new CliError('give either --data or a command after --, not both', EXIT.usage);
    if (flags.stdin && (flags.data === '-' || flags.data === '@-')) {
      throw new CliError('--data - and --stdin both read standard input: give the --data JSON from a file (--data @FILE)', EXIT.usage);
    }
  } else if (argv.length === 0) {
    throw new CliError('nothing to run: give a command after --, or --data JSON', EXIT.usage);
  }
}

/** client.enqueue(), with a request too large for a request file told as a usage error that says what it holds. */
async function enqueueOrSayWhy(client: WorkQueueClient, body: unknown, options: Parameters<WorkQueueClient['enqueue']>[1]): Promise<string> {
  try {
    return await client.enqueue(body, options);
  } catch (err) {
    if (!(err instanceof RequestTooLargeError)) throw err;
    throw new CliError(
      `the request is ${err.bytes} bytes encoded (its command or --data, --env and --stdin together); a request may be at most ${describeBytes(err.limitBytes)}: give the task a file to read instead`,
      EXIT.usage,
    );
  }
}

/** A command request: where wq prints both streams to one place, the task writes them to one place too (2>&1), in the order it wrote them. */
function commandBody(argv: string[], flags: EnqueueFlags): CommandRequest {
  const joined = flags.wait === true && flags.json !== true && sameFile(1, 2);
  return joined ? { argv, cwd: process.cwd(), stderrToStdout: true } : { argv, cwd: process.cwd() };
}

function checkFollowJson(flags: WaitFlags): void {
  if (flags.follow && flags.json) throw new CliError('--follow streams the output as it comes; --json prints it once at the end: pick one', EXIT.usage);
}

function checkId(id: string): void {
  if (!isRequestId(id)) throw new CliError(`"${id}" is not a request id (they look like 1763830000000000-0123456789ab)`, EXIT.usage);
}

/** Before a wait: says so when some of the requests need a server and none runs. */
async function warnIfUnserved(queue: QueueBackend, ids: string[]): Promise<void> {
  const states = (await Promise.all(ids.map((id) => queue.locate(id)))).filter((state) => state !== undefined && state !== 'complete');
  if (states.length === 0) return;
  if (ids.length > 1) await warnIfNoServer(queue, 'the requests not yet complete wait until');
  else await warnIfNoServer(queue, states[0] === 'running' ? 'the request was interrupted and runs again when' : undefined);
}

/** Says so on stderr when no server runs the spool: the request then waits until one starts. */
async function warnIfNoServer(queue: QueueBackend, fate = 'the request stays queued until'): Promise<void> {
  if (!(await queue.serving())) {
    printError(`no server is running on ${where(queue)}; ${fate} \`wq serve\` starts`);
  }
}

/** Waits (with live status and --follow as asked), prints the outcome, sets the exit code. */
async function waitAndReport(client: WorkQueueClient, id: string, flags: WaitFlags, stops: StopListener): Promise<void> {
  const showLine = process.stderr.isTTY === true && !flags.quiet && !flags.json;
  const line = showLine ? await (await import('./progress.js')).startLiveLine(client.queue, id) : undefined;
  // Task output passes the line only where it lands on the line's terminal: stderr, and stdout when it is the same.
  const stdoutOnLine = line !== undefined && sameFile(1, 2);
  const around = (write: () => void, shown: Uint8Array | string): void => (line ? line.around(write, shown) : write());
  const follower = flags.follow
    ? await followOutput(client.queue, id, {
        stdout: (chunk) => {
          if (!stops.outputOpen) return; // its reader went away: the wait is stopping
          if (stdoutOnLine) around(() => process.stdout.write(chunk), chunk);
          else process.stdout.write(chunk);
        },
        stderr: (chunk) => {
          if (stops.outputOpen) around(() => process.stderr.write(chunk), chunk);
        },
      }, (attempt) => {
        const message = `wq: request ${id} is running again (attempt ${attempt})\n`;
        if (!flags.quiet) around(() => process.stderr.write(message), message);
      })
    : undefined;
  let outcome: Outcome;
  try {
    const result: RequestResult = await client.waitForResult(id, { ...waitOptions(flags, stops), keepLogs: follower !== undefined });
    outcome = { kind: 'result', id, result };
  } catch (err) {
    outcome = outcomeOf(err, id, stops);
  } finally {
    await follower?.finish();
    line?.stop();
    client.close();
  }
  try {
    // Still listening: an EPIPE while the result is printed tells this wait, rather than ending wq with the result unclaimed.
    const code = render(outcome, { json: flags.json === true, quiet: flags.quiet === true, streamed: follower?.sawLogs === true, together: sameFile(1, 2) }, output(stops));
    process.exitCode = outcome.kind === 'result' && !flags.keep ? await claimIfPrinted(client, [id], stops, code) : code;
  } finally {
    stops.close();
  }
  // A detached request still runs, and a kept or unprinted result stays: their logs are not ours to remove.
  const left = flags.keep || (outcome.kind === 'interrupted' && outcome.detached) || (outcome.kind === 'result' && stops.cause === 'SIGPIPE');
  if (follower !== undefined && !left) client.removeRequestLogs(id);
}

/**
 * Claims results once their output is written (wq reads them without
 * claiming): a result whose output could not be written, its reader gone,
 * stays in the spool for a later `wq wait`, and stderr says so. Returns the
 * exit code: `code`, or 141 then.
 */
async function claimIfPrinted(client: WorkQueueClient, ids: string[], stops: StopListener, code: number): Promise<number> {
  const [out, err] = await Promise.all([written(process.stdout), written(process.stderr)]);
  if (out && err && stops.outputOpen) {
    for (const id of ids) await client.claim(id);
    return code;
  }
  stops.stop('SIGPIPE');
  if (err) for (const id of ids) process.stderr.write(`wq: the output could not be written (its reader went away): the result stays in the spool: wq wait ${id}\n`);
  return exitCodeForCause('SIGPIPE');
}

/** Whether everything written to `stream` so far got through (false once its reader went away). */
function written(stream: NodeJS.WriteStream): Promise<boolean> {
  if (stream.errored !== null || stream.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => stream.write('', (err) => resolve(err === null || err === undefined)));
}

/**
 * `wq wait ID...`: waits for every request at once (so each result is claimed
 * as soon as it is written, and a deadline or a signal reaches them all), and
 * prints each outcome in the order given. Exits with the first non-zero exit
 * code in that order, or 128+N if a signal stopped the wait.
 */
async function waitForEach(client: WorkQueueClient, ids: string[], flags: WaitFlags, stops: StopListener): Promise<void> {
  // Each result is claimed as it arrives, not when its turn to print comes.
  const options = { ...waitOptions(flags, stops), deferClaim: false };
  // Settled promises that never reject: an error is thrown when its turn comes, not left unhandled.
  const settled = ids.map((id) =>
    client.waitForResult(id, options).then(
      (result): { outcome: Outcome } => ({ outcome: { kind: 'result', id, result } }),
      (err: unknown): { outcome: Outcome } | { error: unknown } => {
        try {
          return { outcome: outcomeOf(err, id, stops) };
        } catch (error) {
          return { error };
        }
      },
    ),
  );
  const showLine = process.stderr.isTTY === true && !flags.quiet && !flags.json;
  const together = sameFile(1, 2);
  let exitCode: number = EXIT.ok;
  try {
    for (const [i, id] of ids.entries()) {
      const line = showLine ? await (await import('./progress.js')).startLiveLine(client.queue, id) : undefined;
      const done = await settled[i]!;
      line?.stop();
      if ('error' in done) throw done.error;
      const code = render(done.outcome, { json: flags.json === true, quiet: flags.quiet === true, streamed: false, together }, output(stops));
      if (exitCode === EXIT.ok) exitCode = code;
    }
  } finally {
    client.close();
  }
  process.exitCode = stops.cause === undefined ? exitCode : exitCodeForCause(stops.cause);
}

function waitOptions(flags: WaitFlags, stops: StopListener): WaitOptions {
  // One result is claimed once printed (claimIfPrinted): a closed stdout never costs it.
  return { timeoutMs: flags.timeout, signal: stops.signal, abortOnCancel: flags.detachOnSignal !== true, keep: flags.keep === true, deferClaim: flags.keep !== true };
}

/** `--follow` on the queue: streams the output as it is written, where the queue keeps it apart. */
function followOutput(queue: QueueBackend, id: string, sinks: OutputSinks, onRerun: (attempt: number) => void): Promise<OutputFollower> {
  if (queue.follow === undefined) throw new CliError(`--follow: the queue at ${queue.location} does not keep output apart to stream`, EXIT.usage);
  return queue.follow(id, sinks, onRerun);
}

/** The outcome a wait's error stands for; other errors are thrown on. */
function outcomeOf(err: unknown, id: string, stops: StopListener): Outcome {
  if (err instanceof WorkQueueTimeoutError) return { kind: 'timeout', id, deadline: err.deadline, timeoutMs: err.timeoutMs, left: !err.requestAborted };
  if (err instanceof WorkQueueCancelledError) return { kind: 'interrupted', id, cause: stops.cause ?? 'SIGINT', detached: !err.requestAborted };
  if (err instanceof UnknownRequestError) return { kind: 'unknown', id, message: err.message };
  throw err;
}

/** stdout, or nothing once its reader has gone away (the wait is stopping). */
function output(stops: StopListener): NodeJS.WritableStream {
  return stops.outputOpen ? process.stdout : new Writable({ write: (_chunk, _encoding, done) => done() });
}
