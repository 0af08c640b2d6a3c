/**
 * The waits of one spool client for results: one watch of complete/ wakes
 * them (a result's name is its id), and a slow re-check finds what the watch
 * missed and tells a wait whose request is in no state. A result is read as
 * the wait asks (claimed by one waiter, or only read); a request found
 * nowhere twice in a row is unknown, as a restarting server moves running/
 * back to pending/ in between.
 */
import type { FSWatcher } from 'node:fs';
import { UnknownRequestError } from '../errors.js';
import type { Logger } from '../logger.js';
import { MISSING_CHECKS_BEFORE_UNKNOWN, type ResultOutcome, type ResultTake, type ResultWatch } from '../queue/backend.js';
import type { SpoolPaths } from './layout.js';
import { locateRequest } from './locate.js';
import { claimResult, peekResult } from './result-claim.js';
import { asSpoolError } from './spool-fault.js';
import * as sfs from './fs.js';

/** Waits whose request is looked for in every state at each re-check (in turn, when there are more). */
const UNKNOWN_CHECKS_PER_RECHECK = 256;
/** Ids this client enqueued and has not waited for yet, remembered (newest) so a wait need not look everywhere for them. */
const MAX_REMEMBERED_IDS = 4096;

/**
 * How hard a wait looks when poked: `arrived`, its result's name was just seen
 * in complete/ (read it straight away); `result`, look for the result;
 * `everywhere`, and if there is none, look for the request in every state.
 */
type Look = 'arrived' | 'result' | 'everywhere';

export interface ResultWaitsOptions {
  spool: string;
  /** Wake waits on file-system events for complete/ (else the re-check alone). */
  watch: boolean;
  recheckIntervalMs: number;
  logger: Logger;
}

export class ResultWaits {
  readonly #o: ResultWaitsOptions;
  readonly #paths: () => SpoolPaths;
  /** id → callbacks of the waits for that id. */
  readonly #waiters = new Map<string, Set<(look: Look) => void>>();
  #watcher: FSWatcher | undefined;
  #recheckTimer: NodeJS.Timeout | undefined;

  /** `paths`: the spool, opened when first needed. */
  constructor(options: ResultWaitsOptions, paths: () => SpoolPaths) {
    this.#o = options;
    this.#paths = paths;
  }

  /**
   * See MAX_REMEMBERED_IDS: id → the watcher of complete/ that was live when
   * it was published, if one was; 'arrived' once that watcher reported the id
   * (before anyone waited for it); undefined when a wait must look.
   */
  readonly #enqueuedHere = new Map<string, FSWatcher | 'arrived' | undefined>();

  /** A request this client just published: its wait need not look everywhere for it. */
  remember(id: string): void {
    this.#enqueuedHere.set(id, this.#watcher);
    if (this.#enqueuedHere.size > MAX_REMEMBERED_IDS) this.#enqueuedHere.delete(this.#enqueuedHere.keys().next().value!);
  }

  /** Waits for the result of `id` (QueueBackend.watchResult()). */
  watch(id: string, take: ResultTake, settle: (outcome: ResultOutcome) => void): ResultWatch {
    const paths = this.#paths();
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

  /** Stops watching. Pending waits are left unsettled. */
  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#recheckTimer !== undefined) clearInterval(this.#recheckTimer);
    this.#recheckTimer = undefined;
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
    const dir = this.#paths().dirs.complete;
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
      for (const name of sfs.listEntries(this.#paths().dirs.complete)) {
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
