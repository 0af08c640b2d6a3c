/**
 * The spool as a queue backend (src/queue/backend.ts): what WorkQueueClient
 * and `wq` do with a spool directory.
 *
 * A request is written in full to tmp/ and only then published as
 * requested/<id> by link(2), which fails rather than replace an existing id.
 * A result is claimed by reading complete/<id> and then unlinking it: only the
 * waiter whose unlink succeeds uses it, so one waiter gets each result. Waiting wakes on file-system events
 * for complete/, with a slow re-check as a safety net, never a fast poll.
 */
import type { FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import { AbortRefusedError, UnknownRequestError, WorkQueueError } from '../errors.js';
import type { Logger } from '../logger.js';
import { judgeAbort } from '../protocol.js';
import type { OutputFollower, OutputSinks, QueueBackend, ResultOutcome, ResultTake, ResultWatch } from '../queue/backend.js';
import type { AbortOutcome, AbortReason, QueueStatus, RequestProgress, RequestResult, RequestState } from '../queue/types.js';
import { hasTaskInput, type TaskInput } from '../task-input.js';
import { encodeAbortReason } from './abort-reason.js';
import { encodeRequest } from './codec.js';
import { entryPath, openSpool, removeLogs, spoolPaths, type SpoolPaths } from './layout.js';
import { locateRequest } from './locate.js';
import { isServing, readLockOwner } from './lock.js';
import { ownActiveRequests } from './own-requests.js';
import { RequestIdGenerator, type IdSource } from './request-id.js';
import { claimResult, peekResult, removeResult } from './result-claim.js';
import { asSpoolError } from './spool-fault.js';
import * as sfs from './fs.js';

export { locateRequest } from './locate.js';

/** How many fresh ids enqueue() tries before it gives up (each try only fails on an exact collision). */
export const MAX_ID_ATTEMPTS = 100;
/** States after requested/, checked (in flow order) for an id that is already taken. */
const LATER_STATES = ['pending', 'running', 'complete'] as const;
/** Waits whose request is looked for in every state at each re-check (in turn, when there are more). */
const UNKNOWN_CHECKS_PER_RECHECK = 256;
/** Consecutive re-checks that must find a request nowhere before a wait calls it unknown. */
const MISSING_CHECKS_BEFORE_UNKNOWN = 2;
/** Ids this client enqueued and has not waited for yet, remembered (newest) so a wait need not look everywhere for them. */
const MAX_REMEMBERED_IDS = 4096;
/** Request files that carry an environment or stdin are not readable by others (the umask still applies). */
const INPUT_REQUEST_MODE = 0o640;
/** Times abortAndConfirm() files an abort when the marker the server removed was another client's. */
const MAX_ABORT_FILINGS = 3;

/**
 * How hard a wait looks when poked: `arrived`, its result's name was just seen
 * in complete/ (read it straight away); `result`, look for the result;
 * `everywhere`, and if there is none, look for the request in every state.
 */
type Look = 'arrived' | 'result' | 'everywhere';

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
  /** id → callbacks of the waits for that id. */
  readonly #waiters = new Map<string, Set<(look: Look) => void>>();
  #watcher: FSWatcher | undefined;
  #recheckTimer: NodeJS.Timeout | undefined;

  constructor(options: SpoolQueueOptions) {
    this.#o = options;
    this.#ids = new RequestIdGenerator(options.idSource);
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
    const paths = this.#spoolPaths();
    const keepLogs = take.keepOutput;
    const read = take.take === 'read' ? peekResult : claimResult;
    let missing = 0;
    const done = (outcome: ResultOutcome): void => {
      this.#removeWaiter(id, attempt);
      settle(outcome);
    };
    let refused = false;
    const attempt = (look: Look): void => {
      try {
        const claim = read(paths, id, keepLogs, look === 'arrived');
        if (claim !== undefined && 'result' in claim) return done(claim);
        if (claim !== undefined && !refused) {
          refused = true; // said once per wait; the server replaces the entry with the real result
          this.#o.logger.warn(`ignoring complete/${id}, which is not this request's result from the server (${claim.refused}); still waiting`, { id });
        }
        if (look !== 'everywhere') return;
        missing = locateRequest(paths, id, claim !== undefined) === undefined ? missing + 1 : 0;
        if (missing >= MISSING_CHECKS_BEFORE_UNKNOWN) done({ error: new UnknownRequestError(id) });
      } catch (err) {
        done({ error: asSpoolError(this.#o.spool, err) });
      }
    };
    /** At the deadline: the result if it is there now, or unknown if the request is found nowhere (twice in a row, like peek()). */
    const lastLook = (): ResultOutcome | undefined => {
      let outcome: ResultOutcome | undefined;
      try {
        let gone = 0;
        for (let look = 0; look < 2 * MISSING_CHECKS_BEFORE_UNKNOWN && outcome === undefined; look++) {
          const claim = read(paths, id, keepLogs, false);
          if (claim !== undefined && 'result' in claim) outcome = claim;
          else {
            const state = locateRequest(paths, id, claim !== undefined);
            if (state !== undefined && state !== 'complete') break;
            if (state === undefined && ++gone >= MISSING_CHECKS_BEFORE_UNKNOWN) outcome = { error: new UnknownRequestError(id) };
            if (state !== undefined) gone = 0;
          }
        }
      } catch (err) {
        outcome = { error: err };
      }
      if (outcome !== undefined) this.#removeWaiter(id, attempt);
      return outcome;
    };
    const watch: ResultWatch = { lastLook, stop: () => this.#removeWaiter(id, attempt) };
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
    return watch;
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
