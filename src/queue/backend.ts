/**
 * The queue interface: everything WorkQueueClient and the `wq` CLI do with a
 * queue, whatever holds it (the spool directory today; a distributed backend
 * later). A backend keeps the protocol's promises: a request is enqueued whole
 * or not at all, one waiter claims each result, an abort is carried out by the
 * server. The client adds validation, timeouts and AbortSignals on top.
 * Capabilities a backend may lack are optional members (`follow?`).
 */
import type { TaskInput } from '../task-input.js';
import type { AbortOutcome, AbortReason, QueueStatus, RequestProgress, RequestResult, RequestState } from './types.js';

/**
 * Consecutive looks that must find a request in no state before a wait calls
 * it unknown, on every backend: between two states a request may be seen in
 * neither (a restarting server moves it back; a result is being stored).
 */
export const MISSING_CHECKS_BEFORE_UNKNOWN = 2;

/** A value now, or later: a local backend answers at once, a remote one does not. */
export type Awaitable<T> = T | Promise<T>;

/** How a wait takes its result. */
export interface ResultTake {
  /** `claim`: take it (one waiter gets each result); `read`: leave it for a later claim (claim()). */
  take: 'claim' | 'read';
  /** Leave the request's whole output apart after claiming (the caller removes it: removeOutput()). */
  keepOutput: boolean;
}

/** How a wait ended, as the backend saw it: the result, or an error (UnknownRequestError when the request is in no state). */
export type ResultOutcome = { result: RequestResult } | { error: unknown };

/** A wait in progress (watchResult()). */
export interface ResultWatch {
  /** At a deadline: one last look. The outcome if the wait is over (its callback is then not called), or undefined if the result is still to come. */
  lastLook(): Awaitable<ResultOutcome | undefined>;
  /** Stops waiting: the callback is not called after. */
  stop(): void;
}

/** Where a followed request's output goes. */
export type OutputSinks = Record<'stdout' | 'stderr', (chunk: Uint8Array) => void>;

/** A request's output being streamed while it runs (follow()). */
export interface OutputFollower {
  /** Whether any output was found kept apart (if not, the result carries the output). */
  readonly sawLogs: boolean;
  /** Reads what is left, stops following. */
  finish(): Promise<void>;
}

export interface QueueBackend {
  /** Where the queue is, for messages: the spool directory. */
  readonly location: string;

  /**
   * Adds a request; resolves with its id. `body` is plain data; throws
   * RequestTooLargeError past MAX_REQUEST_BYTES encoded.
   */
  enqueue(body: unknown, input: TaskInput, runTimeoutMs: number | undefined): Promise<string>;

  /**
   * Waits for the result of `id`, and calls `settle` once with the outcome
   * (never synchronously after stop()). The request is looked for as the
   * wait goes: found in no state twice in a row, it is unknown.
   */
  watchResult(id: string, take: ResultTake, settle: (outcome: ResultOutcome) => void): ResultWatch;

  /** The result if it is there, without claiming it; undefined while the request waits or runs; UnknownRequestError in no state. */
  peek(id: string): Promise<RequestResult | undefined>;

  /** Claims a result read without claiming it; false if it was no longer there. */
  claim(id: string): Promise<boolean>;

  /** Files an abort for each id (already checked). */
  abort(ids: readonly string[], reason: AbortReason): Promise<void>;

  /** Files an abort and waits up to `timeoutMs` for the server to act on it; AbortRefusedError when it refused. */
  abortAndConfirm(id: string, timeoutMs: number): Promise<AbortOutcome>;

  /** Aborts every request of the calling user that waits or runs now; resolves with their ids, oldest first. */
  abortOwn(reason: AbortReason): Promise<string[]>;

  /** Which state a request is in now, or undefined if it is in none. */
  locate(id: string): Awaitable<RequestState | undefined>;

  /** Removes a request's output kept apart (after a wait with `keepOutput`). */
  removeOutput(id: string): void;

  /** Whether a server serves the queue now. */
  serving(): Awaitable<boolean>;

  /** Who serves the queue, and every request with its place in line, what holds it, run time or result age. */
  status(nowMs?: number): Awaitable<QueueStatus>;

  /** One request's progress: its place in line and what holds it, or how long it has run. */
  progress(id: string): Awaitable<RequestProgress>;

  /** Streams a running request's output as it is written; `onRerun(attempt)` when a later run starts over. Optional: not every backend keeps output apart. */
  follow?(id: string, sinks: OutputSinks, onRerun?: (attempt: number) => void): Promise<OutputFollower>;

  /** Stops watching; waits in progress are left unsettled. */
  close(): void;
}
