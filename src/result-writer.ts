/**
 * Publishes results: write-then-publish to complete/<id>, then remove the
 * request's last state entry, so a request is never without either its
 * request file or its result. A name already at complete/<id> can only be
 * planted (only the server writes there): it is removed, never written through.
 *
 * In durable mode results are group-committed: the results of a tick (and of
 * every tick while a commit runs) are written, fsynced concurrently so the
 * file system commits them together, linked, and covered by one fsync of
 * complete/. Only then are their running/ entries removed: if power fails
 * first, the request is still in running/ and runs again.
 */
import type { Logger } from './logger.js';
import { serializeError } from './errors.js';
import { entryPath, type SpoolPaths } from './spool/layout.js';
import * as sfs from './spool/fs.js';

export type LastState = 'running' | 'pending' | 'requested';

interface Pending {
  id: string;
  from: LastState;
  bytes: Buffer;
}

/** After a failed durable commit (a full disk), wait this long before trying again. */
const RETRY_MS = 1000;

export class ResultWriter {
  readonly #paths: SpoolPaths;
  readonly #durable: boolean;
  readonly #log: Logger;
  readonly #onPublished: (id: string) => void;
  #batch: Pending[] = [];
  #committing: Promise<void> | undefined;
  #closed = false;

  constructor(paths: SpoolPaths, durable: boolean, log: Logger, onPublished: (id: string) => void) {
    this.#paths = paths;
    this.#durable = durable;
    this.#log = log;
    this.#onPublished = onPublished;
  }

  /** Publishes at once, or (durable) joins the next group commit. */
  write(id: string, from: LastState, bytes: Buffer): void {
    if (!this.#durable) {
      this.#publish(id, sfs.writeTemp(this.#paths.dirs.tmp, 'result', bytes));
      this.#finish(id, from);
      return;
    }
    this.#batch.push({ id, from, bytes });
    this.#committing ??= new Promise<void>((resolve) => setImmediate(() => void this.#commitAll().then(resolve)));
  }

  /** Resolves when every result written so far is committed (or given up at close). */
  async idle(): Promise<void> {
    while (this.#committing !== undefined) await this.#committing;
  }

  /** Stops retrying failed commits: their requests stay in running/ and run again at the next start. */
  close(): void {
    this.#closed = true;
  }

  async #commitAll(): Promise<void> {
    while (this.#batch.length > 0 && !this.#closed) {
      const batch = this.#batch;
      this.#batch = [];
      try {
        await this.#commit(batch);
      } catch (err) {
        this.#log.error('durable commit of results failed; will retry', { results: batch.length, error: serializeError(err).message });
        this.#batch = [...batch, ...this.#batch];
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    this.#committing = undefined;
  }

  async #commit(batch: Pending[]): Promise<void> {
    const temps: string[] = [];
    try {
      for (const item of batch) temps.push(sfs.writeTemp(this.#paths.dirs.tmp, 'result', item.bytes));
      await Promise.all(temps.map((temp) => sfs.syncFileAsync(temp)));
      batch.forEach((item, i) => this.#publish(item.id, temps[i]!));
      temps.length = 0; // published (publish removes the temp name)
      await sfs.syncDirectoryAsync(this.#paths.dirs.complete);
      for (const item of batch) this.#finish(item.id, item.from);
    } finally {
      for (const temp of temps) sfs.removeEntry(temp);
    }
  }

  #publish(id: string, temp: string): void {
    const dest = entryPath(this.#paths, 'complete', id);
    if (sfs.linkExclusive(temp, dest)) {
      sfs.removeEntry(temp);
      return;
    }
    this.#log.warn('removed a foreign entry at complete/<id> before writing the result', { id });
    sfs.removeEntry(dest);
    if (!sfs.publish(temp, dest)) throw new Error(`cannot publish result for ${id}: complete/${id} keeps reappearing`);
  }

  #finish(id: string, from: LastState): void {
    sfs.removeEntry(entryPath(this.#paths, from, id));
    this.#onPublished(id);
  }
}
