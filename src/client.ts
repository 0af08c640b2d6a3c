/**
 * WorkQueueClient: puts requests into a spool and collects their results.
 *
 * A request is written in full to tmp/ and only then published as
 * requested/<id> by link(2), which fails rather than replace an existing id.
 * A result is claimed by reading complete/<id> and then unlinking it: only the
 * waiter whose unlink succeeds uses it, so one waiter gets each result. Waiting wakes on file-system events
 * for complete/, with a slow re-check as a safety net, never a fast poll.
 */
import type { FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import {
  AbortRefusedError,
  InvalidOptionError,
  TaskFailedError,
  UnknownRequestError,
  WorkQueueCancelledError,
  WorkQueueError,
  WorkQueueTimeoutError,
} from './errors.js';
import { encodeAbortReason } from './spool/abort-reason.js';
import { encodeRequest } from './spool/codec.js';
import { entryPath, openSpool, removeLogs, type SpoolPaths } from './spool/layout.js';
import type { AbortReason, RequestState, ResultEnvelope } from './spool/types.js';
import { silentLogger, type Logger } from './logger.js';
import { claimResult, locateRequest, peekResult, removeResult } from './result-claim.js';
import { ownActiveRequests } from './own-requests.js';
import { isRequestId, RequestIdGenerator, type IdSource } from './spool/request-id.js';
import * as sfs from './spool/fs.js';
import { asSpoolError } from './spool/spool-fault.js';
import { isServing, readLockOwner } from './spool/lock.js';
import { judgeAbort } from './protocol.js';
import { stripUndefined } from './options.js';
import { hasTaskInput, invalidVariables, type TaskInput } from './task-input.js';
import { MAX_TIMER_DELAY_MS, setLongTimeout, type LongTimeout } from './long-timer.js';

/** How many fresh ids enqueue() tries before it gives up (each try only fails on an exact collision). */
export const MAX_ID_ATTEMPTS = 100;
/** States after requested/, checked (in flow order) for an id that is already taken. */
const LATER_STATES = ['pending', 'running', 'complete'] as const;
/** Waits whose request is looked for in every state at each re-check (in turn, when there are more). */
const UNKNOWN_CHECKS_PER_RECHECK = 256;
/** Consecutive re-checks that must find a request nowhere before wait() calls it unknown. */
const MISSING_CHECKS_BEFORE_UNKNOWN = 2;
/** Ids this client enqueued and has not waited for yet, remembered (newest) so a wait need not look everywhere for them. */
const MAX_REMEMBERED_IDS = 4096;

/**
 * How hard a wait looks when poked: `arrived`, its result's name was just seen
 * in complete/ (read it straight away); `result`, look for the result;
 * `everywhere`, and if there is none, look for the request in every state.
 */
type Look = 'arrived' | 'result' | 'everywhere';

export interface WorkQueueClientOptions {
  /** The spool directory. Created (with its state directories) if missing. */
  spool: string;
  /**
   * Wake waiters on file-system events for complete/. With `false`, wait()
   * only polls every `recheckIntervalMs` (for network file systems).
   * @default true
   */
  watch?: boolean;
  /**
   * Period of the safety re-check while waiting (the poll period when `watch` is false).
   * @default 1000
   */
  recheckIntervalMs?: number;
  /** fsync each request and its directory before enqueue() returns. @default false */
  durable?: boolean;
  /** Clock and randomness for ids; tests inject one to force collisions or clock steps. */
  idSource?: IdSource;
  /**
   * Told (warn) what a wait works around: something at complete/<id> that is
   * not a result, a watch that cannot be set up. Each once.
   * @default silent
   */
  logger?: Logger;
}

export interface EnqueueOptions {
  /**
   * The server terminates the task this long after it starts; waiting then
   * fails with a WorkQueueTimeoutError whose `deadline` is 'run'.
   * @default no limit
   */
  runTimeoutMs?: number;
  /**
   * Environment variables for the task. A command gets them on top of the
   * server's environment (whose OLDPWD it never gets, and whose PWD is set to
   * the command's directory); a handler gets them as `context.env`. A server
   * that runs a fixed command (`wq serve --exec`) takes only the names it
   * accepts and fails the request otherwise. They are written into the
   * request file (mode 0640): in a shared spool its group can read them.
   * @default none: a command gets the server's environment
   * @example env: { MAKEFLAGS: '-j8' }
   */
  env?: Record<string, string>;
  /**
   * `env` is the command's whole environment, instead of an addition to the
   * server's (`wq enqueue --env-all` sends `process.env` so). @default false
   * @example { env: { ...process.env } as Record<string, string>, replaceEnv: true }
   */
  replaceEnv?: boolean;
  /**
   * The task's standard input: a command reads it on its stdin, a handler gets
   * it as `context.stdin` (bytes). A string is sent as UTF-8. It counts against
   * the request's size limit (1 MiB encoded, with the body and `env`).
   * @default none: a command's stdin is /dev/null
   * @example stdin: 'yes\n'
   */
  stdin?: Uint8Array | string;
}

/** Request files that carry an environment or stdin are not readable by others (the umask still applies). */
const INPUT_REQUEST_MODE = 0o640;

export interface WaitOptions {
  /** Give up after this long: the request is aborted and WorkQueueTimeoutError thrown. @default no limit */
  timeoutMs?: number;
  /** Cancels the wait: the request is aborted (unless `abortOnCancel` is false) and WorkQueueCancelledError thrown. */
  signal?: AbortSignal;
  /**
   * When `signal` cancels the wait, abort the request too. With `false` the
   * request is left to run and its result to be claimed by a later wait.
   * @default true
   */
  abortOnCancel?: boolean;
  /**
   * Leave the request's output logs in logs/ after claiming the result (the
   * caller reads and removes them, e.g. with removeRequestLogs()). Without it,
   * a command result's streams are read whole from the logs (the envelope
   * carries only their first 1 MiB); a `stdoutDropped`/`stderrDropped` still
   * set on the value means that part of the output was lost. @default false
   */
  keepLogs?: boolean;
  /**
   * Read the result without claiming it: it stays in the spool, with its
   * logs, for a later wait to claim (or for the server to expire). Such a wait
   * never aborts the request: its timeout and `signal` only stop the waiting
   * (WorkQueueTimeoutError or WorkQueueCancelledError with `requestAborted`
   * false). A waiter that claims the result meanwhile loses nothing to it; this
   * one then rejects with UnknownRequestError.
   * @default false
   * @example
   * const result = await client.waitForResult(id, { keep: true }); // a later wait(id) still gets it
   */
  keep?: boolean;
  /**
   * Read the result without claiming it, and leave the claim to the caller
   * (claim()) once it has used the result, e.g. printed or stored it: a
   * caller that fails to (a closed stdout) leaves the result in the spool for
   * a later wait instead of losing it. Unlike `keep`, a timeout or `signal`
   * still aborts the request. A waiter that claims the result in between
   * loses nothing to this one (both may then use it).
   * @default false
   * @example
   * const result = await client.waitForResult(id, { deferClaim: true });
   * await save(result);
   * await client.claim(id);
   */
  deferClaim?: boolean;
}

export interface ConfirmAbortOptions {
  /** How long to wait for the server to act on the abort. @default 10000 */
  timeoutMs?: number;
}

/**
 * What came of an abort, as far as a client can tell (abortAndConfirm()):
 * `aborted`, the server carried it out (the request never starts, was killed,
 * or its result was dropped), or the request left the spool meanwhile;
 * `unknown`, the id was in no state: the abort stays filed for 10 minutes in
 * case the request is still being published; `filed`, no server is running:
 * the abort takes effect when one starts; `unconfirmed`, a server runs but did
 * not act on it within `timeoutMs`.
 */
export type AbortOutcome = 'aborted' | 'unknown' | 'filed' | 'unconfirmed';

/** Times abortAndConfirm() files an abort when the marker the server removed was another client's. */
const MAX_ABORT_FILINGS = 3;

/** The full outcome of a request, for callers that want timings or the status as well as the value. */
export type RequestResult = ResultEnvelope;

type ResolvedClientOptions = Required<Omit<WorkQueueClientOptions, 'idSource'>> & { idSource: IdSource | undefined };

export function resolveClientOptions(options: WorkQueueClientOptions): ResolvedClientOptions {
  const resolved: ResolvedClientOptions = {
    watch: true,
    recheckIntervalMs: 1000,
    durable: false,
    logger: silentLogger,
    ...stripUndefined(options),
    spool: options.spool,
    idSource: options.idSource,
  };
  if (typeof resolved.spool !== 'string' || resolved.spool === '') {
    throw new InvalidOptionError(`Expected \`spool\` to be a non-empty string, got \`${String(resolved.spool)}\` (${typeof resolved.spool})`);
  }
  // A period setInterval can hold: past 2^31-1 ms Node fires it every millisecond instead.
  if (!(Number.isFinite(resolved.recheckIntervalMs) && resolved.recheckIntervalMs > 0 && resolved.recheckIntervalMs <= MAX_TIMER_DELAY_MS)) {
    throw new InvalidOptionError(`Expected \`recheckIntervalMs\` to be a finite number > 0 and <= ${MAX_TIMER_DELAY_MS}, got \`${String(resolved.recheckIntervalMs)}\` (${typeof resolved.recheckIntervalMs})`);
  }
  return resolved;
}

export class WorkQueueClient {
  readonly #o: ResolvedClientOptions;
  readonly #ids: RequestIdGenerator;
  #paths: SpoolPaths | undefined;
  /** id → callbacks of the waits for that id. */
  readonly #waiters = new Map<string, Set<(look: Look) => void>>();
  #watcher: FSWatcher | undefined;
  #recheckTimer: NodeJS.Timeout | undefined;

  constructor(options: WorkQueueClientOptions) {
    this.#o = resolveClientOptions(options);
    this.#ids = new RequestIdGenerator(this.#o.idSource);
  }

  get spool(): string {
    return this.#o.spool;
  }

  /**
   * Adds a request to the queue and returns its id. The request must be plain
   * data (objects, arrays, strings, numbers, booleans, null, bytes) of at most 1 MiB encoded.
   * @example
   * const id = await client.enqueue({ argv: ['echo', 'hi'] });
   */
  async enqueue(request: unknown, options: EnqueueOptions = {}): Promise<string> {
    const { runTimeoutMs } = options;
    if (runTimeoutMs !== undefined && !(Number.isFinite(runTimeoutMs) && runTimeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`runTimeoutMs\` to be a finite number >= 0, got \`${String(runTimeoutMs)}\` (${typeof runTimeoutMs})`);
    }
    const input = resolveTaskInput(options);
    const paths = this.#spoolPaths();
    const bytes = encodeRequest({
      body: request,
      submittedAt: Date.now(),
      client: this.#identity(),
      ...(runTimeoutMs === undefined ? {} : { runTimeoutMs }),
      ...input,
    });
    const mode = hasTaskInput(input) ? INPUT_REQUEST_MODE : undefined;
    if (this.#o.durable) return this.#enqueueDurably(bytes, mode);
    return this.#onSpool(() => {
      const temp = sfs.writeTemp(paths.dirs.tmp, 'request', bytes, { mode });
      try {
        return this.#publishRequest(paths, temp);
      } finally {
        sfs.removeEntry(temp);
      }
    });
  }

  /** Runs `work` on the spool; a system error that says the spool cannot be used becomes a SpoolError naming it. */
  #onSpool<T>(work: () => T): T {
    try {
      return work();
    } catch (err) {
      throw asSpoolError(this.#o.spool, err);
    }
  }

  /** Links a complete request file into requested/ under a fresh id; returns the id. */
  #publishRequest(paths: SpoolPaths, temp: string): string {
    for (let attempt = 0; attempt < MAX_ID_ATTEMPTS; attempt++) {
      const id = this.#ids.next();
      const published = entryPath(paths, 'requested', id);
      if (!sfs.linkExclusive(temp, published)) continue;
      // link(2) only guards requested/. Unless the suffix is random (the
      // system source), make sure no older request with this id is further
      // along (a clock and an id source that both repeat).
      if (!this.#ids.randomSuffix && LATER_STATES.some((state) => sfs.entryExists(entryPath(paths, state, id))) && sfs.removeEntry(published)) continue;
      this.#remember(id);
      return id;
    }
    throw new WorkQueueError(`could not find a free request id in ${MAX_ID_ATTEMPTS} attempts; is the id source broken?`, 'ERR_ID_EXHAUSTED');
  }

  /**
   * See MAX_REMEMBERED_IDS: id → the watcher of complete/ that was live when
   * it was published, if one was; 'arrived' once that watcher reported the id
   * (before anyone waited for it); undefined when a wait must look.
   */
  readonly #enqueuedHere = new Map<string, FSWatcher | 'arrived' | undefined>();

  #remember(id: string): void {
    this.#enqueuedHere.set(id, this.#watcher);
    if (this.#enqueuedHere.size > MAX_REMEMBERED_IDS) this.#enqueuedHere.delete(this.#enqueuedHere.keys().next().value!);
  }

  /** Durable enqueues waiting for the next group commit. */
  #durableBatch: Array<{ bytes: Buffer; mode: number | undefined; resolve: (id: string) => void; reject: (err: unknown) => void }> = [];

  /**
   * Durable mode, with group commit: every enqueue() made while the previous
   * commit runs joins the next one. A commit writes the batch's files, fsyncs
   * them concurrently (so the file system commits them together), links them
   * into requested/, and fsyncs requested/ once for the whole batch.
   */
  #enqueueDurably(bytes: Buffer, mode: number | undefined): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.#durableBatch.push({ bytes, mode, resolve, reject });
      if (!this.#committing && this.#durableBatch.length === 1) setImmediate(() => void this.#commitDurableBatches());
    });
  }

  #committing = false;

  /** Commits batches one after the other until no enqueue is waiting. */
  async #commitDurableBatches(): Promise<void> {
    this.#committing = true;
    while (this.#durableBatch.length > 0) {
      const batch = this.#durableBatch;
      this.#durableBatch = [];
      const paths = this.#spoolPaths();
      const temps: string[] = [];
      try {
        for (const item of batch) temps.push(sfs.writeTemp(paths.dirs.tmp, 'request', item.bytes, { mode: item.mode }));
        await Promise.all(temps.map((temp) => sfs.syncFileAsync(temp)));
        const ids = temps.map((temp) => this.#publishRequest(paths, temp));
        await sfs.syncDirectoryAsync(paths.dirs.requested);
        batch.forEach((item, i) => item.resolve(ids[i]!));
      } catch (err) {
        for (const item of batch) item.reject(asSpoolError(this.#o.spool, err));
      } finally {
        for (const temp of temps) sfs.removeEntry(temp);
      }
    }
    this.#committing = false;
  }

  /**
   * Asks the server to abort a request, or each of several: never start it, or
   * kill it if running, or remove its unclaimed result. Every id is checked
   * before any abort is filed. Aborting an unknown id is harmless (see state()
   * to tell). In a spool shared by several users, the server carries out only
   * aborts of the caller's own requests (unless it allows foreign aborts).
   * @example
   * await client.abort(id);
   * await client.abort([first, second]);
   */
  async abort(ids: string | readonly string[], reason: AbortReason = 'user'): Promise<void> {
    const list = typeof ids === 'string' ? [ids] : ids;
    for (const id of list) assertRequestId(id);
    const paths = this.#spoolPaths();
    for (const id of list) this.#fileAbort(paths, id, reason); // false: an abort is already filed, which is as good
  }

  /**
   * Aborts a request, like abort(), and waits until the server has acted on
   * it. Rejects with AbortRefusedError when the server refused it (on a shared
   * spool, only the request's owner, the server's user and root may abort
   * it): the request carries on. See AbortOutcome for what it resolves with.
   * @example
   * if ((await client.abortAndConfirm(id)) === 'unknown') console.error(`no request ${id}`);
   */
  async abortAndConfirm(id: string, options: ConfirmAbortOptions = {}): Promise<AbortOutcome> {
    assertRequestId(id);
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`timeoutMs\` to be a finite number >= 0, got \`${String(timeoutMs)}\` (${typeof timeoutMs})`);
    }
    const paths = this.#spoolPaths();
    const marker = entryPath(paths, 'aborting', id);
    const known = this.state(id) !== undefined;
    let ownMarker = this.#fileAbort(paths, id, 'user');
    if (!known) return 'unknown';
    if (!isServing(paths, readLockOwner(paths))) return 'filed';
    const deadline = Date.now() + timeoutMs;
    let filings = 1;
    const changes = this.#watchForChanges(paths.dirs.aborting, id);
    try {
      for (;;) {
        // The marker first: the server removes the request before it, so a marker seen gone with the request still there is a refusal.
        const markerFound = this.#onSpool(() => sfs.entryExists(marker));
        const where = this.state(id);
        switch (judgeAbort({ requestFound: where !== undefined, markerFound, ownMarker })) {
          case 'gone':
            return 'aborted';
          case 'refused':
            throw new AbortRefusedError(id, this.#ownerOf(paths, id, where), this.#onSpool(() => sfs.entryStat(paths.lockFile)?.uid));
          case 'file-again':
            if (filings++ >= MAX_ABORT_FILINGS) return 'unconfirmed';
            ownMarker = this.#fileAbort(paths, id, 'user');
            continue;
          case 'not-yet':
            break;
        }
        const left = deadline - Date.now();
        if (left <= 0) return 'unconfirmed';
        await changes.next(Math.min(left, this.#o.recheckIntervalMs));
      }
    } finally {
      changes.close();
    }
  }

  /** Publishes aborting/<id>; false when a marker was there already (filed by someone else, or earlier). */
  #fileAbort(paths: SpoolPaths, id: string, reason: AbortReason): boolean {
    return this.#onSpool(() => sfs.publish(sfs.writeTemp(paths.dirs.tmp, 'abort', encodeAbortReason(reason)), entryPath(paths, 'aborting', id)));
  }

  /** The owner of a request's file, for messages; undefined when it cannot be seen (it moved on meanwhile). */
  #ownerOf(paths: SpoolPaths, id: string, state: RequestState | undefined): number | undefined {
    if (state === undefined) return undefined;
    return this.#onSpool(() => sfs.entryStat(entryPath(paths, state, id))?.uid);
  }

  /**
   * Resolves next() at the next change to `name` in `dir` (fs.watch), or after
   * at most the given ms (the watch may drop events, or not be possible).
   */
  #watchForChanges(dir: string, name: string): { next: (ms: number) => Promise<void>; close: () => void } {
    let wake: (() => void) | undefined;
    let watcher: FSWatcher | undefined;
    try {
      watcher = sfs.watchDirectory(dir, (changed) => {
        if (changed === null || changed === name) wake?.();
      }, () => wake?.());
    } catch {
      // no watch (ENOSPC, EMFILE …): the timeout alone paces the looks
    }
    return {
      next: (ms) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => done(), ms);
          const done = (): void => {
            clearTimeout(timer);
            wake = undefined;
            resolve();
          };
          wake = done;
        }),
      close: () => watcher?.close(),
    };
  }

  /**
   * Aborts every request of the calling user that is queued or running now:
   * those whose request files it owns, never another user's in a shared
   * spool. Results already written are left to be claimed. Resolves with the
   * ids it aborted, oldest first.
   * @example
   * const aborted = await client.abortAll(); // ['1795366421947895-8d42b22ad816', …]
   */
  async abortAll(reason: AbortReason = 'user'): Promise<string[]> {
    const uid = process.getuid?.();
    if (uid === undefined) throw new WorkQueueError('abortAll() tells requests apart by their owner, which this system does not have (no process.getuid)', 'ERR_UNSUPPORTED');
    const paths = this.#spoolPaths();
    const ids = this.#onSpool(() => ownActiveRequests(paths, uid));
    await this.abort(ids, reason);
    return ids;
  }

  /**
   * Reads a request's result without claiming it: the result stays for a wait
   * to claim. Resolves with undefined while the request is queued or running;
   * rejects with UnknownRequestError when it is in no state (never enqueued,
   * aborted, or its result claimed).
   * @example
   * const result = await client.peek(id);
   * if (result !== undefined) console.log(result.status);
   */
  async peek(id: string): Promise<RequestResult | undefined> {
    assertRequestId(id);
    const paths = this.#spoolPaths();
    // Found nowhere twice before it counts as unknown, like a wait: a restarting server moves running/ back to pending/.
    let missing = 0;
    for (let look = 0; look < 2 * MISSING_CHECKS_BEFORE_UNKNOWN; look++) {
      const read = this.#onSpool(() => peekResult(paths, id, false, false));
      if (read !== undefined && 'result' in read) return read.result;
      const state = this.#onSpool(() => locateRequest(paths, id, read !== undefined));
      if (state === undefined && ++missing >= MISSING_CHECKS_BEFORE_UNKNOWN) break;
      if (state !== undefined && state !== 'complete') return undefined; // else published meanwhile: read it
    }
    throw new UnknownRequestError(id);
  }

  /**
   * Waits for a request's result and claims it (removes it from the spool;
   * with `keep`, reads it and leaves it there).
   * Resolves with the task's value; rejects with TaskFailedError carrying the
   * task's error, WorkQueueTimeoutError, WorkQueueCancelledError or UnknownRequestError.
   * @example
   * const value = await client.wait(id, { timeoutMs: 60_000 });
   */
  async wait(id: string, options: WaitOptions = {}): Promise<unknown> {
    return resultValue(await this.waitForResult(id, options));
  }

  /** Like wait(), but resolves with the whole result envelope (status, timings), even for a failed task. */
  async waitForResult(id: string, options: WaitOptions = {}): Promise<RequestResult> {
    assertRequestId(id);
    const { timeoutMs, signal } = options;
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`timeoutMs\` to be a finite number >= 0, got \`${String(timeoutMs)}\` (${typeof timeoutMs})`);
    }
    const paths = this.#spoolPaths();
    return new Promise<RequestResult>((resolve, reject) => {
      let missing = 0;
      let timer: LongTimeout | undefined;
      const settle = (fn: () => void): void => {
        this.#removeWaiter(id, attempt);
        timer?.clear();
        signal?.removeEventListener('abort', onCancel);
        fn();
      };
      const keep = options.keep === true;
      const giveUp = (reason: AbortReason, error: Error): void => {
        settle(() => {
          this.abort(id, reason).then(() => reject(error), reject);
        });
      };
      const onCancel = (): void => {
        if (options.abortOnCancel === false || keep) settle(() => reject(new WorkQueueCancelledError(id, signal?.reason, false)));
        else giveUp('cancelled', new WorkQueueCancelledError(id, signal?.reason));
      };
      const onTimeout = (): void => {
        // A deadline reached with nothing to wait for is an unknown request, not a late one.
        if (lastLook()) return;
        if (keep) settle(() => reject(new WorkQueueTimeoutError(id, timeoutMs!, 'total', false)));
        else giveUp('timeout', new WorkQueueTimeoutError(id, timeoutMs!));
      };
      const read = keep || options.deferClaim === true ? peekResult : claimResult;
      /** At the deadline: the result if it is there now, or unknown if the request is found nowhere (twice in a row, like peek()); true if that settled the wait. */
      const lastLook = (): boolean => {
        try {
          let gone = 0;
          for (let look = 0; look < 2 * MISSING_CHECKS_BEFORE_UNKNOWN; look++) {
            const claim = read(paths, id, options.keepLogs === true, false);
            if (claim !== undefined && 'result' in claim) {
              settle(() => resolve(claim.result));
              return true;
            }
            const state = locateRequest(paths, id, claim !== undefined);
            if (state !== undefined && state !== 'complete') return false;
            if (state === undefined && ++gone >= MISSING_CHECKS_BEFORE_UNKNOWN) {
              settle(() => reject(new UnknownRequestError(id)));
              return true;
            }
            if (state !== undefined) gone = 0;
          }
          return false;
        } catch (err) {
          settle(() => reject(err));
          return true;
        }
      };
      let refused = false;
      const attempt = (look: Look): void => {
        try {
          const claim = read(paths, id, options.keepLogs === true, look === 'arrived');
          if (claim !== undefined && 'result' in claim) return settle(() => resolve(claim.result));
          if (claim !== undefined && !refused) {
            refused = true; // said once per wait; the server replaces the entry with the real result
            this.#o.logger.warn(`ignoring complete/${id}, which is not this request's result from the server (${claim.refused}); still waiting`, { id });
          }
          if (look !== 'everywhere') return;
          missing = locateRequest(paths, id, claim !== undefined) === undefined ? missing + 1 : 0;
          if (missing >= MISSING_CHECKS_BEFORE_UNKNOWN) settle(() => reject(new UnknownRequestError(id)));
        } catch (err) {
          settle(() => reject(asSpoolError(this.#o.spool, err)));
        }
      };
      if (signal?.aborted) return onCancel();
      signal?.addEventListener('abort', onCancel, { once: true });
      if (timeoutMs !== undefined) timer = setLongTimeout(onTimeout, timeoutMs);
      const fresh = this.#enqueuedHere.has(id);
      const watcherAtPublish = this.#enqueuedHere.get(id);
      this.#enqueuedHere.delete(id);
      this.#addWaiter(id, attempt);
      // A request this client has just put in requested/ is known to exist:
      // only its result is looked for now (the re-checks look for the rest).
      // Not even that if the watcher that is live now was already live when
      // the request was published and has not reported it: the result's
      // arrival is an event still to come.
      if (!fresh) attempt('everywhere');
      else if (watcherAtPublish === 'arrived') attempt('arrived');
      else if (watcherAtPublish === undefined || watcherAtPublish !== this.#watcher) attempt('result');
    });
  }

  /**
   * Claims a result read without claiming it (a wait with `deferClaim` or
   * `keep`, peek()): removes it and its output logs from the spool. Resolves
   * with false if it was no longer there (another waiter claimed it, or it
   * was aborted). In a shared spool, where only the server removes results,
   * files an abort that makes the server remove it.
   * @example
   * await client.claim(id);
   */
  async claim(id: string): Promise<boolean> {
    assertRequestId(id);
    const paths = this.#spoolPaths();
    return this.#onSpool(() => removeResult(paths, id));
  }

  /**
   * Enqueues a request and waits for its result.
   * @example
   * const value = await client.run({ argv: ['true'] }, { timeoutMs: 10_000 });
   */
  async run(request: unknown, options: WaitOptions & EnqueueOptions = {}): Promise<unknown> {
    const { runTimeoutMs, env, replaceEnv, stdin } = options;
    return this.wait(await this.enqueue(request, { runTimeoutMs, env, replaceEnv, stdin }), options);
  }

  /** Which state a request is in now, or undefined if it is in none. */
  state(id: string): RequestState | undefined {
    assertRequestId(id);
    const paths = this.#spoolPaths();
    return this.#onSpool(() => locateRequest(paths, id));
  }

  /** Removes a request's output logs (after a wait with `keepLogs`). */
  removeRequestLogs(id: string): void {
    assertRequestId(id);
    const paths = this.#spoolPaths();
    this.#onSpool(() => removeLogs(paths, id));
  }

  /** Stops watching. Pending waits are left unresolved; call after they settle. */
  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#recheckTimer !== undefined) clearInterval(this.#recheckTimer);
    this.#recheckTimer = undefined;
  }

  #clientIdentity: { pid: number; host: string; uid?: number } | undefined;
  #identity(): { pid: number; host: string; uid?: number } {
    if (this.#clientIdentity === undefined) {
      const uid = process.getuid?.();
      this.#clientIdentity = { pid: process.pid, host: hostname(), ...(uid === undefined ? {} : { uid }) };
    }
    return this.#clientIdentity;
  }

  #spoolPaths(): SpoolPaths {
    this.#paths ??= openSpool(this.#o.spool);
    return this.#paths;
  }

  #addWaiter(id: string, poke: (look: Look) => void): void {
    let set = this.#waiters.get(id);
    if (set === undefined) this.#waiters.set(id, (set = new Set()));
    set.add(poke);
    if (this.#o.watch && this.#watcher === undefined) this.#watcher = this.#watchComplete();
    this.#watcher?.ref();
    this.#recheckTimer ??= setInterval(() => this.#recheck(), this.#o.recheckIntervalMs);
  }

  /**
   * A watch of complete/, or undefined if none can be set up (the inotify
   * watch limit is used up: ENOSPC; out of descriptors: EMFILE …). Then, or
   * when a watch breaks later, waits rely on the re-check, and the next wait
   * tries to watch again.
   */
  #watchComplete(): FSWatcher | undefined {
    const dir = this.#spoolPaths().dirs.complete;
    try {
      return sfs.watchDirectory(dir, (name) => this.#poke(name), (err) => {
        this.#watcher?.close();
        this.#watcher = undefined;
        this.#watchFailed(dir, err);
      });
    } catch (err) {
      this.#watchFailed(dir, err);
      return undefined;
    }
  }

  #watchFailureReported = false;

  /** Says once per client that waits fall back to the re-check: they are slower, not broken. */
  #watchFailed(dir: string, err: unknown): void {
    if (this.#watchFailureReported) return;
    this.#watchFailureReported = true;
    const seconds = this.#o.recheckIntervalMs / 1000;
    this.#o.logger.warn(`cannot watch ${dir} for results (${err instanceof Error ? err.message : String(err)}); checking every ${seconds} s instead`, { dir });
  }

  #removeWaiter(id: string, poke: (look: Look) => void): void {
    const set = this.#waiters.get(id);
    set?.delete(poke);
    if (set?.size === 0) this.#waiters.delete(id);
    if (this.#waiters.size === 0) {
      // Keep the watch for the next wait, but let the process exit while idle.
      this.#watcher?.unref();
      if (this.#recheckTimer !== undefined) clearInterval(this.#recheckTimer);
      this.#recheckTimer = undefined;
    }
  }

  /** A watcher event: the name of an entry that appeared in (or left) complete/; null when the system could not say. */
  #poke(name: string | null): void {
    if (name === null) for (const id of this.#enqueuedHere.keys()) this.#enqueuedHere.set(id, undefined); // cannot tell which
    else if (!this.#waiters.has(name) && this.#enqueuedHere.has(name)) this.#enqueuedHere.set(name, 'arrived');
    const targets = name === null ? [...this.#waiters.values()] : [this.#waiters.get(name)];
    for (const set of targets) for (const poke of [...(set ?? [])]) poke(name === null ? 'result' : 'arrived');
  }

  /** Where the last re-check's unknown-request checks stopped, so each re-check takes the next ones. */
  #recheckCursor = 0;

  /**
   * The safety re-check. One listing of complete/ finds every result the
   * watcher missed (it drops events on overflow), however many waits there
   * are; and up to UNKNOWN_CHECKS_PER_RECHECK waits, in turn, check whether
   * their request has vanished from every state.
   */
  #recheck(): void {
    try {
      for (const name of sfs.listEntries(this.#spoolPaths().dirs.complete)) {
        const set = this.#waiters.get(name);
        if (set !== undefined) for (const poke of [...set]) poke('arrived');
      }
    } catch {
      // complete/ unreadable for now: the per-wait checks below still run
    }
    const ids = [...this.#waiters.keys()];
    if (ids.length === 0) return;
    const count = Math.min(ids.length, UNKNOWN_CHECKS_PER_RECHECK);
    for (let i = 0; i < count; i++) {
      const set = this.#waiters.get(ids[(this.#recheckCursor + i) % ids.length]!);
      for (const poke of [...(set ?? [])]) poke('everywhere');
    }
    this.#recheckCursor = (this.#recheckCursor + count) % ids.length;
  }
}

/** Turns a result envelope into the task's value, or throws the task's error. */
export function resultValue(result: RequestResult): unknown {
  if (result.ok) return result.value;
  if (result.status === 'timed_out') throw new WorkQueueTimeoutError(result.id, result.runTimeoutMs ?? 0, 'run');
  throw new TaskFailedError(result.id, result.error!);
}

function assertRequestId(id: string): void {
  if (typeof id !== 'string' || !isRequestId(id)) {
    throw new InvalidOptionError(`Expected a request id like 1763830000000000-0123456789ab, got \`${String(id)}\``);
  }
}

/** EnqueueOptions' env, replaceEnv and stdin, checked, as the request envelope carries them. */
export function resolveTaskInput(options: Pick<EnqueueOptions, 'env' | 'replaceEnv' | 'stdin'>): TaskInput {
  const { env, replaceEnv, stdin } = options;
  const input: TaskInput = {};
  if (env !== undefined) {
    const why = invalidVariables(env);
    if (why !== undefined) throw new InvalidOptionError(`Expected \`env\` to be a map of variable names to strings, but it ${why}`);
    input.env = Object.assign(Object.create(null) as Record<string, string>, env); // __proto__ is a name like any other
  }
  if (replaceEnv !== undefined && typeof replaceEnv !== 'boolean') {
    throw new InvalidOptionError(`Expected \`replaceEnv\` to be a boolean, got \`${String(replaceEnv)}\` (${typeof replaceEnv})`);
  }
  if (replaceEnv === true) {
    input.replaceEnv = true;
    input.env ??= Object.create(null) as Record<string, string>;
  }
  if (stdin !== undefined) {
    if (typeof stdin !== 'string' && !(stdin instanceof Uint8Array)) {
      throw new InvalidOptionError(`Expected \`stdin\` to be a Uint8Array or a string, got \`${String(stdin)}\` (${typeof stdin})`);
    }
    input.stdin = typeof stdin === 'string' ? Buffer.from(stdin, 'utf8') : stdin;
  }
  return input;
}
