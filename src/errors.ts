/**
 * Error classes. Every error the library throws on purpose is a WorkQueueError
 * with a stable `code`; the CLI maps classes to exit codes (see docs/cli.md).
 */

export class WorkQueueError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ERR_WORKQUEUE', options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * `wait()` gave up: the request was aborted and will never report a result;
 * or, after a wait with `keep`, it was left alone (`requestAborted` false).
 */
export class WorkQueueTimeoutError extends WorkQueueError {
  readonly requestId: string;
  readonly timeoutMs: number;
  /** Which deadline expired: the total one, or the one counted from the task's start. */
  readonly deadline: 'total' | 'run';
  /** False when only the waiting stopped (a wait with `keep`): the request goes on. */
  readonly requestAborted: boolean;
  constructor(requestId: string, timeoutMs: number, deadline: 'total' | 'run' = 'total', requestAborted = true) {
    const what = deadline === 'run' ? 'run timeout' : 'timeout';
    super(`request ${requestId} timed out after ${timeoutMs / 1000} s (${what}); it was ${requestAborted ? 'aborted' : 'left in the spool'}`, 'ERR_TIMEOUT');
    this.requestId = requestId;
    this.timeoutMs = timeoutMs;
    this.deadline = deadline;
    this.requestAborted = requestAborted;
  }
}

/** The request is in no state of the spool: aborted by someone, claimed by another waiter, or never existed. */
export class UnknownRequestError extends WorkQueueError {
  readonly requestId: string;
  constructor(requestId: string) {
    super(`unknown request id ${requestId}: it is in no state of the spool (never enqueued, aborted, or its result was already claimed)`, 'ERR_UNKNOWN_REQUEST');
    this.requestId = requestId;
  }
}

/** The waiting was cancelled through an AbortSignal; the request was aborted, unless `abortOnCancel: false` or `keep` left it queued. */
export class WorkQueueCancelledError extends WorkQueueError {
  readonly requestId: string;
  readonly requestAborted: boolean;
  constructor(requestId: string, reason?: unknown, requestAborted = true) {
    super(`waiting for request ${requestId} was cancelled; the request was ${requestAborted ? 'aborted' : 'left queued'}`, 'ERR_CANCELLED', { cause: reason });
    this.requestId = requestId;
    this.requestAborted = requestAborted;
  }
}

/**
 * The server refused an abort: on a spool shared by several users, only a
 * request's owner, the server's user and root may abort it (unless the server
 * allows anyone). The request carries on.
 */
export class AbortRefusedError extends WorkQueueError {
  readonly requestId: string;
  /** Who filed the request (owns its file), when the client could see it. */
  readonly ownerUid: number | undefined;
  constructor(requestId: string, ownerUid: number | undefined, serverUid: number | undefined) {
    const owner = ownerUid === undefined ? 'another user' : `uid ${ownerUid}`;
    const server = serverUid === undefined ? "the server's user" : `the server's user (uid ${serverUid})`;
    super(
      `the server refused to abort request ${requestId}: it was filed by ${owner}, and only its owner, ${server} and root may abort it ` +
        '(unless the server allows anyone to: wq serve --allow-foreign-aborts); it carries on',
      'ERR_ABORT_REFUSED',
    );
    this.requestId = requestId;
    this.ownerUid = ownerUid;
  }
}

/** Another live server holds the spool's lock. */
export class SpoolLockedError extends WorkQueueError {
  /** Undefined when the holder has not yet written who it is (it is just starting). */
  readonly ownerPid: number | undefined;
  constructor(spool: string, ownerPid: number | undefined, ownerHost: string | undefined) {
    const who = ownerPid === undefined ? 'another wq server' : `another wq server (pid ${ownerPid} on ${ownerHost})`;
    super(`${who} is already serving spool ${spool}`, 'ERR_SPOOL_LOCKED');
    this.ownerPid = ownerPid;
  }
}

/** A spool file is not a valid envelope: bad bytes, wrong version, too large, wrong type of file. */
export class ProtocolError extends WorkQueueError {
  constructor(message: string, options?: ErrorOptions, code = 'ERR_PROTOCOL') {
    super(message, code, options);
  }
}

/**
 * A request is larger, encoded, than a request file may be (MAX_REQUEST_BYTES):
 * its body, environment and standard input together. Nothing was enqueued.
 * A ProtocolError, as every envelope a client may not write.
 */
export class RequestTooLargeError extends ProtocolError {
  readonly bytes: number;
  readonly limitBytes: number;
  constructor(bytes: number, limitBytes: number) {
    super(`the request is ${bytes} bytes encoded; the limit is ${limitBytes}`, undefined, 'ERR_REQUEST_TOO_LARGE');
    this.bytes = bytes;
    this.limitBytes = limitBytes;
  }
}

/** The spool directory is missing parts, has an unknown format version, or cannot be used. */
export class SpoolError extends WorkQueueError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SPOOL', options);
  }
}

/** A queue on Redis cannot be reached (refused, timed out, or gone for longer than a client waits for it). The CLI exits 3, as for an unusable spool. */
export class QueueUnreachableError extends WorkQueueError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_QUEUE_UNREACHABLE', options);
  }
}

/**
 * A server refused to run a request because another user owns its file
 * (`requestOwners`: a root command server runs only root's requests).
 */
export class ForeignRequestError extends WorkQueueError {
  readonly ownerUid: number;
  constructor(message: string, ownerUid: number) {
    super(message, 'ERR_FOREIGN_REQUEST');
    this.ownerUid = ownerUid;
  }
}

/** Invalid options passed to a constructor or method. */
export class InvalidOptionError extends WorkQueueError {
  constructor(message: string) {
    super(message, 'ERR_INVALID_OPTION');
  }
}

/** A command wrote more output than the server allows (`maxOutputBytes`, `wq serve --max-output`); it was stopped. */
export class OutputLimitError extends WorkQueueError {
  constructor(message: string) {
    super(message, 'ERR_OUTPUT_LIMIT');
  }
}

/** The spool's disk is full: a task's output or result could not be written there. */
export class DiskFullError extends WorkQueueError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_DISK_FULL', options);
  }
}

/**
 * A task failed on the server side. Rebuilt on the client from the result's
 * structured error: `remote` keeps what the server sent, `cause` an Error made from it.
 */
export class TaskFailedError extends WorkQueueError {
  readonly requestId: string;
  readonly remote: SerializedError;
  constructor(requestId: string, remote: SerializedError) {
    const cause = new Error(remote.message);
    cause.name = remote.name;
    if (remote.stack !== undefined) cause.stack = remote.stack;
    super(`request ${requestId} failed: ${remote.name}: ${remote.message}`, remote.code ?? 'ERR_TASK_FAILED', { cause });
    this.requestId = requestId;
    this.remote = remote;
  }
}

/** The form in which an error crosses the spool (and the process-pool IPC channel). */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** Turns anything thrown into a SerializedError, keeping only plain string fields. */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const out: SerializedError = { name: err.name || 'Error', message: err.message };
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out.code = String(code);
    if (typeof err.stack === 'string') out.stack = err.stack;
    return out;
  }
  return { name: 'Error', message: typeof err === 'string' ? err : safeString(err) };
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * The fields of a Node system error (NodeJS.ErrnoException) that this package
 * reads, declared here so that its type declarations need no @types/node.
 */
export interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

/** Narrow test for a Node system error with the given code (EEXIST, ENOENT …). */
export function isErrno(err: unknown, code: string): err is SystemError {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
