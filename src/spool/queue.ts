/**
 * The spool as a queue backend (src/queue/backend.ts): what WorkQueueClient
 * and `wq` do with a spool directory.
 *
 * A request is written in full to tmp/ and only then published as
 * requested/<id> by link(2), which fails rather than replace an existing id.
 * A result is claimed by reading complete/<id> and then unlinking it: only the
 * waiter whose unlink succeeds uses it, so one waiter gets each result. Waiting
 * (result-waits.ts) wakes on file-system events for complete/, with a slow
 * re-check as a safety net, never a fast poll. An abort is a marker in
 * aborting/ that the server carries out.
 */
import type { FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import { AbortRefusedError, UnknownRequestError, WorkQueueError } from '../errors.js';
import type { Logger } from '../logger.js';
import { judgeAbort } from '../protocol.js';
import { MISSING_CHECKS_BEFORE_UNKNOWN, type OutputFollower, type OutputSinks, type QueueBackend, type ResultOutcome, type ResultTake, type ResultWatch } from '../queue/backend.js';
import type { AbortOutcome, AbortReason, QueueStatus, RequestProgress, RequestResult, RequestState } from '../queue/types.js';
import { hasTaskInput, type TaskInput } from '../task-input.js';
import { encodeAbortReason } from './abort-reason.js';
import { encodeRequest } from './codec.js';
import { entryPath, openSpool, removeLogs, spoolPaths, type SpoolPaths } from './layout.js';
import { locateRequest } from './locate.js';
import { isServing, readLockOwner } from './lock.js';
import { ownActiveRequests } from './own-requests.js';
import { RequestIdGenerator, type IdSource } from './request-id.js';
import { peekResult, removeResult } from './result-claim.js';
import { ResultWaits } from './result-waits.js';
import { asSpoolError } from './spool-fault.js';
import * as sfs from './fs.js';
import { GroupCommit } from './group-commit.js';


/** One durable enqueue waiting for its group commit. */
interface DurableEnqueue {
  bytes: Buffer;
  mode: number | undefined;
  resolve: (id: string) => void;
  reject: (err: unknown) => void;
}
export { locateRequest } from './locate.js';

/** How many fresh ids enqueue() tries before it gives up (each try only fails on an exact collision). */
export const MAX_ID_ATTEMPTS = 100;
/** States after requested/, checked (in flow order) for an id that is already taken. */
const LATER_STATES = ['pending', 'running', 'complete'] as const;
/** Request files that carry an environment or stdin are not readable by others (the umask still applies). */
const INPUT_REQUEST_MODE = 0o640;
/** Times abortAndConfirm() files an abort when the marker the server removed was another client's. */
const MAX_ABORT_FILINGS = 3;

/** A spool queue's settings: WorkQueueClientOptions, resolved. */
export interface SpoolQueueOptions {
  spool: string;
  watch: boolean;
  recheckIntervalMs: number;
  durable: boolean;
  idSource: IdSource | undefined;
  logger: Logger;
}

export class SpoolQueue implements QueueBackend {
  readonly #o: SpoolQueueOptions;
  readonly #ids: RequestIdGenerator;
  #paths: SpoolPaths | undefined;
  readonly #waits: ResultWaits;

  constructor(options: SpoolQueueOptions) {
    this.#o = options;
    this.#ids = new RequestIdGenerator(options.idSource);
    this.#waits = new ResultWaits(options, () => this.#spoolPaths());
  }

  get location(): string {
    return this.#o.spool;
  }

  async enqueue(body: unknown, input: TaskInput, runTimeoutMs: number | undefined): Promise<string> {
    const paths = this.#spoolPaths();
    const bytes = encodeRequest({
      body,
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
      this.#waits.remember(id);
      return id;
    }
    throw new WorkQueueError(`could not find a free request id in ${MAX_ID_ATTEMPTS} attempts; is the id source broken?`, 'ERR_ID_EXHAUSTED');
  }

  /**
   * Durable mode, with group commit (spool/group-commit.ts): every enqueue()
   * made while the previous commit runs joins the next one. A commit writes
   * the batch's files, fsyncs them concurrently (so the file system commits
   * them together), links them into requested/, and fsyncs requested/ once
   * for the whole batch.
   */
  readonly #durable = new GroupCommit<DurableEnqueue>((batch) => this.#commitDurably(batch));

  #enqueueDurably(bytes: Buffer, mode: number | undefined): Promise<string> {
    return new Promise<string>((resolve, reject) => this.#durable.add({ bytes, mode, resolve, reject }));
  }

  /** Commits one batch and settles each of its enqueues; never rejects. */
  async #commitDurably(batch: DurableEnqueue[]): Promise<void> {
    const temps: string[] = [];
    try {
      const paths = this.#spoolPaths();
      for (const item of batch) temps.push(sfs.writeTemp(paths.dirs.tmp, 'request', item.bytes, { mode: item.mode }));
      await Promise.all(temps.map((temp) => sfs.syncFileAsync(temp)));
      const ids = temps.map((temp) => this.#publishRequest(paths, temp));
      await sfs.syncDirectoryAsync(paths.dirs.requested);
      batch.forEach((item, i) => item.resolve(ids[i]!));
    } catch (err) {
      for (const item of batch) item.reject(asSpoolError(this.#o.spool, err));
    } finally {
      for (const temp of temps) removeTempLeavingItToHousekeeping(temp);
    }
  }

  async abort(ids: readonly string[], reason: AbortReason): Promise<void> {
    const paths = this.#spoolPaths();
    for (const id of ids) this.#fileAbort(paths, id, reason); // false: an abort is already filed, which is as good
  }

  async abortAndConfirm(id: string, timeoutMs: number): Promise<AbortOutcome> {
    const paths = this.#spoolPaths();
    const marker = entryPath(paths, 'aborting', id);
    const known = this.locate(id) !== undefined;
    let ownMarker = this.#fileAbort(paths, id, 'user');
    if (!known) return 'unknown';
    if (!this.serving()) return 'filed';
    const deadline = Date.now() + timeoutMs;
    let filings = 1;
    const changes = this.#watchForChanges(paths.dirs.aborting, id);
    try {
      for (;;) {
        // The marker first: the server removes the request before it, so a marker seen gone with the request still there is a refusal.
        const markerFound = this.#onSpool(() => sfs.entryExists(marker));
        const where = this.locate(id);
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

  /** The requests the calling user owns the files of (a shared spool's owner rule), aborted. */
  async abortOwn(reason: AbortReason): Promise<string[]> {
    const uid = process.getuid?.();
    if (uid === undefined) throw new WorkQueueError('abortAll() tells requests apart by their owner, which this system does not have (no process.getuid)', 'ERR_UNSUPPORTED');
    const paths = this.#spoolPaths();
    const ids = this.#onSpool(() => ownActiveRequests(paths, uid));
    await this.abort(ids, reason);
    return ids;
  }

  async peek(id: string): Promise<RequestResult | undefined> {
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

  watchResult(id: string, take: ResultTake, settle: (outcome: ResultOutcome) => void): ResultWatch {
    return this.#waits.watch(id, take, settle);
  }

  async claim(id: string): Promise<boolean> {
    const paths = this.#spoolPaths();
    return this.#onSpool(() => removeResult(paths, id));
  }

  locate(id: string): RequestState | undefined {
    const paths = this.#spoolPaths();
    return this.#onSpool(() => locateRequest(paths, id));
  }

  removeOutput(id: string): void {
    const paths = this.#spoolPaths();
    this.#onSpool(() => removeLogs(paths, id));
  }

  /** Reads the lock (without opening the spool): a server holds it now. */
  serving(): boolean {
    const paths = spoolPaths(this.#o.spool);
    return isServing(paths, readLockOwner(paths));
  }

  // status.js and follow.js are loaded when first used: a client that only
  // enqueues and waits (every `wq enqueue`) never loads them, nor chokidar.

  /** A snapshot that creates nothing: a spool that is not there is a SpoolError. */
  async status(nowMs: number = Date.now()): Promise<QueueStatus> {
    return (await import('./snapshot.js')).readSpoolStatus(this.#o.spool, nowMs);
  }

  #statusModule: typeof import('./snapshot.js') | undefined;
  #lookPaths: SpoolPaths | undefined;

  /** One request's progress; like status(), it opens the spool without creating anything. At once, after the first. */
  progress(id: string): RequestProgress | Promise<RequestProgress> {
    const read = (status: typeof import('./snapshot.js')): RequestProgress => {
      this.#lookPaths ??= openSpool(this.#o.spool, { create: false });
      return status.readProgress(this.#lookPaths, id);
    };
    if (this.#statusModule !== undefined) return read(this.#statusModule);
    return import('./snapshot.js').then((status) => read((this.#statusModule = status)));
  }

  async follow(id: string, sinks: OutputSinks, onRerun?: (attempt: number) => void): Promise<OutputFollower> {
    return (await import('./follow.js')).followLogs(this.#o.spool, id, sinks, onRerun);
  }

  close(): void {
    this.#waits.close();
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

}

/**
 * Removes a request's temp file once it is linked (or failed). A removal that
 * fails (EACCES, EIO) leaves only a temp file, which housekeeping removes after
 * an hour; it must not turn a settled group commit into an unhandled rejection.
 */
function removeTempLeavingItToHousekeeping(temp: string): void {
  try {
    sfs.removeEntry(temp);
  } catch {
    // tmp/ is swept by housekeeping (docs/protocol.md, *Hostile and broken entries*)
  }
}
