/**
 * Why a waiting `wq` stops early: SIGINT, SIGTERM or SIGHUP (Ctrl-C, `timeout`,
 * a cancelled CI job, a closed terminal), or EPIPE on stdout or stderr (the
 * reader went away, `wq … | head -1`). The listeners are installed before the
 * request is published, so no signal finds the default action (death) with a
 * request out.
 */
import { constants as osConstants } from 'node:os';
import { isErrno } from '../errors.js';

/** The signals that stop a wait. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];
/** A signal, or `SIGPIPE`: the reader of stdout or stderr went away (EPIPE; Node ignores the signal itself). */
export type StopCause = StopSignal | 'SIGPIPE';

/** The exit code of a process ended by `cause`, as a shell reports it: 128 + the signal's number. */
export function exitCodeForCause(cause: StopCause): number {
  return 128 + osConstants.signals[cause];
}

/**
 * Listens for the causes above while it is open. The first one aborts
 * `signal` (its reason is the cause); later ones are ignored, so a second
 * Ctrl-C cannot kill `wq` halfway through filing the abort.
 */
export class StopListener {
  readonly #controller = new AbortController();
  readonly #onSignal = (signal: StopSignal): void => this.stop(signal);

  constructor() {
    for (const signal of STOP_SIGNALS) process.on(signal, this.#onSignal);
    listening.add(this);
  }

  /** Aborted at the first cause. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The first cause seen, if any. */
  get cause(): StopCause | undefined {
    return this.#controller.signal.aborted ? (this.#controller.signal.reason as StopCause) : undefined;
  }

  /** Whether stdout and stderr can still be written to (their readers have not gone away). */
  get outputOpen(): boolean {
    return this.cause !== 'SIGPIPE';
  }

  stop(cause: StopCause): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(cause);
  }

  /** Stops listening: signals get their default actions again, and an EPIPE ends `wq` at once. */
  close(): void {
    for (const signal of STOP_SIGNALS) process.off(signal, this.#onSignal);
    listening.delete(this);
  }
}

/** The open StopListeners: an EPIPE stops their waits rather than ending `wq`. */
const listening = new Set<StopListener>();

/**
 * Makes EPIPE on stdout or stderr end `wq` like a Unix filter killed by
 * SIGPIPE: no stack trace, exit 141. While a wait is open, it stops the wait
 * instead (the request is aborted, as at Ctrl-C) and the wait's end sets the
 * exit code. Any other error on these streams is thrown as before.
 */
export function exitQuietlyOnBrokenPipe(streams: NodeJS.WriteStream[] = [process.stdout, process.stderr], exit: (code: number) => void = process.exit): void {
  const onError = (err: Error): void => {
    if (!isErrno(err, 'EPIPE')) throw err;
    if (listening.size === 0) return exit(exitCodeForCause('SIGPIPE'));
    for (const listener of listening) listener.stop('SIGPIPE');
  };
  for (const stream of streams) stream.on('error', onError);
}
