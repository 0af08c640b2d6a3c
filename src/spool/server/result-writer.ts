/**
 * Publishes results in three steps, so that a server killed at any moment
 * leaves either the request (which runs again) or its result, never both in
 * public and never neither:
 *   1. write the result, complete, to running/<id>.result (server-only, not a
 *      public name; created with O_EXCL);
 *   2. remove the request's last state entry (running/, pending/ or requested/);
 *   3. rename running/<id>.result to complete/<id>.
 * A starting server publishes any valid running/<id>.result it finds (and
 * drops its request), and discards a torn one, whose request then runs again
 * (recovery.ts). A name already at complete/<id> can only be
 * planted (only the server writes there): it is removed (unlink, or rmdir for an
 * empty directory) before the rename, never written through; a non-empty
 * directory there makes the result undeliverable: it is dropped and logged,
 * the directory left alone.
 *
 * A result that cannot be written now (a full disk, EMFILE, EACCES on tmp/ or
 * complete/) stays in memory, its request stays in its state directory, and it
 * is retried every second, in order with the results after it; meanwhile
 * `blocked` is true (the server starts no task whose result could not be
 * written either). If the server stops first, the request runs again at the
 * next start. A large result (over 64 KiB) that a full disk refuses is not
 * retried as it is, forever: once the disk has refused it three attempts in a
 * row (about 2 s; a disk filled for a moment by someone else frees up), the
 * server swaps it, once, for a small error result (`ERR_DISK_FULL`), after
 * freeing what the request held (its logs).
 *
 * In durable mode results are group-committed (group-commit.ts): the results
 * of a tick (and of every tick while a commit runs) are written, fsynced concurrently so the
 * file system commits them together, linked, and covered by one fsync of
 * running/ before their requests are removed and they are renamed into
 * complete/, which is fsynced last: after a power loss a request has either
 * its request file or a complete staged result.
 */
import { isErrno } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { shouldShrinkOnFullDisk } from './result-on-full-disk.js';
import { FaultLog } from './fault-log.js';
import { GroupCommit } from '../group-commit.js';
import { entryPath, stagedResultPath, type SpoolPaths } from '../layout.js';
import * as sfs from '../fs.js';

export type LastState = 'running' | 'pending' | 'requested';

interface Pending {
  id: string;
  from: LastState;
  bytes: Buffer;
  /** Written, complete, to running/<id>.result (step 1). */
  staged: boolean;
  /** Durable mode: the staged file is fsynced. */
  synced: boolean;
  /** Its request's last state entry is removed (step 2). */
  requestRemoved: boolean;
  /** Renamed to complete/<id>, or dropped (step 3): nothing left to do. */
  done: boolean;
  /** Aborted before it was published: step 3 removes it instead. */
  cancelled: boolean;
  /** Swapped for a smaller result after a full disk refused it. */
  shrunk?: boolean;
  /** Attempts in a row a full disk refused it. */
  noSpaceFailures?: number;
}

/**
 * Given a result the disk had no room for, returns a small one to write in its
 * place (and frees what the request held), or undefined to keep retrying it.
 */
export type NoSpaceHandler = (id: string, bytes: Buffer) => Buffer | undefined;

/** After a failed write or commit (a full disk), wait this long before trying again. */
const RETRY_MS = 1000;

export class ResultWriter {
  readonly #paths: SpoolPaths;
  readonly #durable: boolean;
  readonly #log: Logger;
  readonly #faults: FaultLog;
  readonly #step: string;
  readonly #onPublished: (id: string, published: boolean) => void;
  readonly #onKept: (id: string, from: LastState) => void;
  readonly #onNoSpace: NoSpaceHandler;
  /** Results not written yet: the next group commit's (durable), or those waiting for a retry. */
  readonly #commits: GroupCommit<Pending>;
  #blocked = false;
  #closed = false;
  #wake: (() => void) | undefined;

  /**
   * @param onPublished called once a result is published (or dropped), its request finished
   * @param onKept called when a request's last state entry is a non-empty
   *   directory (planted), which is left in place
   * @param onNoSpace gives a small result in place of a large one the disk had no room for
   */
  constructor(
    paths: SpoolPaths,
    durable: boolean,
    log: Logger,
    onPublished: (id: string, published: boolean) => void,
    onKept: (id: string, from: LastState) => void = () => {},
    onNoSpace: NoSpaceHandler = () => undefined,
  ) {
    this.#paths = paths;
    this.#durable = durable;
    this.#log = log;
    this.#faults = new FaultLog(log);
    this.#step = durable ? 'durable commit of results' : 'writing results';
    this.#onPublished = onPublished;
    this.#onKept = onKept;
    this.#onNoSpace = onNoSpace;
    this.#commits = new GroupCommit<Pending>((batch) => (durable ? this.#commitDurably(batch) : this.#retry(batch)));
  }

  /** Whether results are waiting because writing them failed (a full disk …) and no retry has succeeded yet. */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** Publishes at once, or (durable) joins the next group commit; or, while writes fail, waits for the retry. */
  write(id: string, from: LastState, bytes: Buffer): void {
    const item: Pending = { id, from, bytes, staged: false, synced: false, requestRemoved: false, done: false, cancelled: false };
    // Durable: the next group commit. Otherwise at once, unless a retry is under way (it takes this one too, in order).
    if (this.#durable || this.#commits.busy) return this.#commits.add(item);
    const left = this.#flush([item]);
    if (left.length > 0) this.#commits.add(item);
  }

  /** Resolves when every result written so far is published (or given up at close). */
  idle(): Promise<void> {
    return this.#commits.idle();
  }

  /** Stops retrying: requests whose result is not written stay where they are and run again at the next start. */
  close(): void {
    this.#closed = true;
    this.#commits.stop();
    this.#wake?.();
  }

  /** Whether a result for this id is being written. */
  holds(id: string): boolean {
    return this.#find(id) !== undefined;
  }

  /**
   * An abort for a request whose result is being written: the result is not
   * published (its staged file is removed at step 3), and `onPublished` is
   * called with `published: false`.
   */
  cancel(id: string): void {
    const item = this.#find(id);
    if (item !== undefined) item.cancelled = true;
  }

  #find(id: string): Pending | undefined {
    return this.#commits.find((item) => item.id === id);
  }

  /** Default mode: publishes results in order; at the first that fails (logged once), returns it and those after it. */
  #flush(batch: Pending[]): Pending[] {
    for (let i = 0; i < batch.length; i++) {
      const item = batch[i]!;
      try {
        this.#stage(item);
        this.#clearDestination(item);
        this.#removeRequest(item);
        this.#publish(item);
      } catch (err) {
        const left = batch.slice(i);
        this.#failed(err, left.length);
        return left;
      }
    }
    this.#succeeded();
    return [];
  }

  /** Default mode, after a failure: waits (while writes fail), then publishes the waiting results in order; hands back what still fails. */
  async #retry(batch: Pending[]): Promise<void> {
    if (this.#blocked) await this.#sleep();
    this.#commits.retry(this.#closed ? batch : this.#flush(batch));
  }

  /** Durable mode: one group commit; after a failure (logged once), waits and hands back what is not published. */
  async #commitDurably(batch: Pending[]): Promise<void> {
    try {
      await this.#commit(batch);
      this.#succeeded();
    } catch (err) {
      const left = batch.filter((item) => !item.done);
      this.#commits.retry(left);
      this.#failed(err, left.length);
      await this.#sleep();
    }
  }

  /** Group commit: stage and fsync every result, fsync running/, remove the requests, publish, fsync complete/. */
  async #commit(batch: Pending[]): Promise<void> {
    for (const item of batch) this.#stage(item);
    const unsynced = batch.filter((item) => !item.synced && !item.cancelled);
    await Promise.all(
      unsynced.map(async (item) => {
        await sfs.syncFileAsync(stagedResultPath(this.#paths, item.id));
        item.synced = true;
      }),
    );
    await sfs.syncDirectoryAsync(this.#paths.dirs.running);
    for (const item of batch) this.#clearDestination(item);
    for (const item of batch) this.#removeRequest(item);
    for (const item of batch) if (!item.done) this.#publish(item);
    await sfs.syncDirectoryAsync(this.#paths.dirs.complete);
  }

  /** Step 1: the complete result at running/<id>.result (a leftover of an earlier failed attempt is replaced). */
  #stage(item: Pending): void {
    if (item.staged) return;
    const staged = stagedResultPath(this.#paths, item.id);
    try {
      sfs.writeNewReplacing(staged, item.bytes);
    } catch (err) {
      if (!this.#shrink(item, err)) throw err;
      sfs.writeNewReplacing(staged, item.bytes);
    }
    item.staged = true;
  }

  /**
   * A large result the full disk refused, attempt after attempt: swapped, once,
   * for the small one onNoSpace gives; false to retry it as it is.
   */
  #shrink(item: Pending, err: unknown): boolean {
    if (!(isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT')) || item.shrunk === true) return false;
    item.noSpaceFailures = (item.noSpaceFailures ?? 0) + 1;
    if (!shouldShrinkOnFullDisk(item.bytes.length, item.noSpaceFailures)) return false;
    const smaller = this.#onNoSpace(item.id, item.bytes);
    if (smaller === undefined) return false;
    this.#log.warn('the disk is full: a result too large for it was replaced by a disk-full error result', { id: item.id, bytes: item.bytes.length });
    item.bytes = smaller;
    item.shrunk = true;
    return true;
  }

  /** Step 2: removes the request's last state entry, whatever it is, without following it. */
  #removeRequest(item: Pending): void {
    if (item.requestRemoved) return;
    const removal = sfs.removeAnyEntry(entryPath(this.#paths, item.from, item.id));
    item.requestRemoved = true;
    if (removal === 'kept') this.#onKept(item.id, item.from);
  }

  /**
   * Before step 2: makes complete/<id> free (only the server creates names there:
   * anything found is planted, and removed). Done while the request is still in
   * place, so that a fault here (EACCES on complete/) leaves the request where
   * clients look for it rather than only in running/<id>.result.
   */
  #clearDestination(item: Pending): void {
    if (item.done || item.cancelled) return;
    const dest = entryPath(this.#paths, 'complete', item.id);
    if (!sfs.entryExists(dest)) return;
    if (sfs.removeAnyEntry(dest) === 'kept') {
      this.#log.error('cannot publish the result: a non-empty directory someone planted holds complete/<id>; the result is dropped and the directory left for the operator', { id: item.id });
      sfs.removeEntry(stagedResultPath(this.#paths, item.id));
      item.done = true;
      this.#onPublished(item.id, false);
      return;
    }
    this.#log.warn('removed a foreign entry at complete/<id> before writing the result', { id: item.id });
  }

  /** Step 3: renames the staged result to complete/<id> (cleared by #clearDestination). */
  #publish(item: Pending): void {
    if (item.done) return;
    if (item.cancelled) {
      sfs.removeEntry(stagedResultPath(this.#paths, item.id));
      item.done = true;
      this.#onPublished(item.id, false);
      return;
    }
    const staged = stagedResultPath(this.#paths, item.id);
    const dest = entryPath(this.#paths, 'complete', item.id);
    let moved: boolean;
    try {
      moved = sfs.moveEntry(staged, dest); // rename(2) replaces a planted file or symlink itself, never its target
    } catch (err) {
      // A directory planted since #clearDestination: clear it, then try once more.
      if (!['EISDIR', 'ENOTEMPTY', 'EEXIST'].some((code) => isErrno(err, code))) throw err;
      this.#clearDestination(item);
      if (item.done) return;
      moved = sfs.moveEntry(staged, dest);
    }
    if (!moved) throw new Error(`the staged result of ${item.id} vanished before it was published`);
    item.done = true;
    this.#onPublished(item.id, true);
  }

  #failed(err: unknown, results: number): void {
    this.#blocked = true;
    this.#faults.failed(this.#step, err, { results });
  }

  #succeeded(): void {
    this.#blocked = false;
    this.#faults.succeeded(this.#step);
  }

  /** Waits RETRY_MS, or until close(). */
  #sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, RETRY_MS);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}
