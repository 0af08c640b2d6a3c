/**
 * What the spool holds, as the public API shows it: a request's states, the
 * protocol version, a result, an abort's reason. Plain declarations, kept apart
 * from the modules that read and write files (layout.ts, codec.ts,
 * abort-reason.ts re-export them), so that the package's type declarations
 * need nothing of Node's (no @types/node for a TypeScript user).
 */
import type { SerializedError } from '../errors.js';

/** States a request moves through, in order. */
export const REQUEST_STATES = ['requested', 'pending', 'running', 'complete'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

/** The on-disk protocol version this code reads and writes. */
export const PROTOCOL_VERSION = 1;

export type ResultStatus = 'normal' | 'error' | 'timed_out' | 'restarted' | 'rejected';

export interface ResultEnvelope {
  v: number;
  type: 'result';
  id: string;
  ok: boolean;
  /**
   * `normal`/`error`: the task ran; `timed_out`: terminated at its run timeout;
   * `restarted`: cut short by a server restart; `rejected`: the request was unreadable.
   */
  status: ResultStatus;
  /** With status `timed_out`: the run timeout that expired. */
  runTimeoutMs?: number;
  /** The task wrote logs/<id>.*; whoever claims the result removes them. */
  logs?: boolean;
  value?: unknown;
  error?: SerializedError;
  /** Server wall clock (ms): when it saw the request, started it, finished it. */
  queuedAt?: number;
  startedAt?: number;
  finishedAt: number;
}

/** Why an abort was filed (`aborting/<id>` holds the word): labels metrics and logs only. */
export const ABORT_REASONS = ['user', 'timeout', 'run-timeout', 'cancelled'] as const;
export type AbortReason = (typeof ABORT_REASONS)[number];
