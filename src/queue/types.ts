/**
 * What every backend of the queue shows its clients: a request's states, a
 * result, a status snapshot, what holds the line. Plain declarations and pure
 * values, with nothing of Node's (no @types/node for a TypeScript user); a
 * backend's own format (the spool's codec) maps to these.
 */
import type { SerializedError } from '../errors.js';

/** States a request moves through, in order. */
export const REQUEST_STATES = ['requested', 'pending', 'running', 'complete'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

/** Largest request a client may enqueue, encoded (body, environment and stdin together), on every backend. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export type ResultStatus = 'normal' | 'error' | 'timed_out' | 'restarted' | 'rejected';

/** The full outcome of a request, for callers that want timings or the status as well as the value. */
export interface RequestResult {
  /** The version of the result's format (the spool's PROTOCOL_VERSION). */
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
  /** The task's whole output is kept apart (the spool's logs/<id>.*); whoever claims the result removes it. */
  logs?: boolean;
  value?: unknown;
  error?: SerializedError;
  /** Server wall clock (ms): when it saw the request, started it, finished it. */
  queuedAt?: number;
  startedAt?: number;
  finishedAt: number;
}

/** Why an abort was filed: labels metrics and logs only. */
export const ABORT_REASONS = ['user', 'timeout', 'run-timeout', 'cancelled'] as const;
export type AbortReason = (typeof ABORT_REASONS)[number];

/**
 * What came of an abort, as far as a client can tell (abortAndConfirm()):
 * `aborted`, the server carried it out (the request never starts, was killed,
 * or its result was dropped), or the request left the queue meanwhile;
 * `unknown`, the id was in no state: the abort stays filed for 10 minutes in
 * case the request is still being published; `filed`, no server is running:
 * the abort takes effect when one starts; `unconfirmed`, a server runs but did
 * not act on it within `timeoutMs`.
 */
export type AbortOutcome = 'aborted' | 'unknown' | 'filed' | 'unconfirmed';

/**
 * What keeps the first queued request from starting, as the server publishes
 * it (the spool's `server.state`, docs/protocol.md, *Server state*). `none`:
 * nothing waits, or the line is moving.
 */
export type QueueHold =
  | { reason: 'none' }
  /** Every slot is taken (`--max-tasks`). */
  | { reason: 'capacity'; maxTasks: number }
  /** The task manager starts nothing now for a reason of its own (`--max-load`: the load average). */
  | { reason: 'load'; load: number; maxLoad: number }
  /** Tasks a stopped server left running still hold slots, or were just killed and are going. */
  | { reason: 'orphans'; tasks: number }
  /** The server is stopping: it starts nothing new. */
  | { reason: 'stopping' }
  /** A result cannot be written (a full disk): nothing starts until it is. */
  | { reason: 'results' }
  /** A fault the server logged (EACCES, EMFILE …) kept it from starting tasks; it retries. */
  | { reason: 'fault' };

/** Why a task manager has no capacity, when not for want of a slot. */
export type ManagerHold = Extract<QueueHold, { reason: 'load' }>;

/** What keeps waiting requests from starting: no server at all, or what the serving process published. */
export type RequestHold = Exclude<QueueHold, { reason: 'none' }> | { reason: 'no-server' };

export interface ServerStatus {
  pid: number;
  host: string;
  startedAt: number;
  uptimeSeconds: number;
  maxTasks: number | null;
  /** False when the queue names a server that is gone (a crashed server). */
  alive: boolean;
}

export interface RequestStatus {
  id: string;
  state: RequestState;
  /** When the client made the request (from the id), ms since the epoch. */
  submittedAt: number;
  /** requested/pending: 1-based place in line (1 starts next). */
  position?: number;
  /** requested/pending: what keeps the line from moving, when something does. */
  heldBy?: RequestHold;
  /** running: seconds since it started, to the millisecond. */
  runningSeconds?: number;
  /** running command tasks: the command's pid (never that of a task known to be gone). */
  pid?: number;
  /** running, but no server runs: the request runs again (or fails) when one starts. */
  interrupted?: boolean;
  /** interrupted: the processes of its task still alive, which the next server kills first. */
  survivingPids?: number[];
  /** complete: seconds the result has waited to be claimed, to the millisecond. */
  waitingSeconds?: number;
  /** An abort for it is filed but not carried out yet. */
  aborting?: boolean;
}

/** A snapshot of a whole queue, for `wq status` and an operator's view. */
export interface QueueStatus {
  /** Where the queue is: the spool directory. */
  spool: string;
  server: ServerStatus | null;
  /** A queue on Redis: every server alive, oldest first, with the tasks each runs (`server` is the first). */
  servers?: Array<ServerStatus & { running: number }>;
  /** Requests in each state; `aborting`: those of them with an abort filed and not carried out yet (an abort for an id in no state is not counted). */
  counts: Record<RequestState, number> & { aborting: number };
  /** Every request, in line order: waiting ones first (by position), then running, then complete. */
  requests: RequestStatus[];
}

/** One request's progress, cheap enough to look at every second while waiting for it. */
export type RequestProgress =
  | { state: 'requested' | 'pending'; /** 1-based place in line. */ position: number; /** Requests waiting in all. */ waiting: number; heldBy?: RequestHold }
  /** Its server is gone: it runs again (or fails) when one starts. */
  | { state: 'running'; interrupted: true }
  /** `sinceMs`: when it started (wall clock, ms). */
  | { state: 'running'; interrupted?: undefined; sinceMs: number | undefined }
  /** Its result is there, or it is in no state (finishing: its result is being claimed). */
  | { state: 'complete' | undefined };
