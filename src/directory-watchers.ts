/**
 * The server's watches on the directories clients write to. fs.watch is fast
 * but may drop events (inotify overflows) or fail (EMFILE, a recreated
 * directory); a watch that failed is remembered and re-armed by rewatch(),
 * and the server's rescans cover what it missed meanwhile.
 */
import type { FSWatcher } from 'node:fs';
import type { SpoolDir } from './spool/layout.js';
import * as sfs from './spool/fs.js';

/** The directories the server watches for new entries. */
export type WatchedDir = Extract<SpoolDir, 'requested' | 'aborting'>;
export const WATCHED_DIRS: readonly WatchedDir[] = ['requested', 'aborting'];

export interface WatchHandlers {
  /** A name appeared in or left the directory at `path`; null when the system could not say which. */
  onName(dir: WatchedDir, path: string, name: string | null): void;
  /** A watch stopped working after it was set up; it is re-armed at the next rewatch(). */
  onBroken(dir: WatchedDir, path: string, err: Error): void;
  /** Setting up a watch succeeded, or failed (it is retried at the next rewatch()). */
  onArmed(dir: WatchedDir, err?: unknown): void;
}

export class DirectoryWatchers {
  readonly #watchers = new Map<WatchedDir, FSWatcher>();
  /** Directories without a working watch: it failed, or the directory was recreated. */
  readonly #unwatched = new Set<WatchedDir>();
  readonly #pathOf: (dir: WatchedDir) => string;
  readonly #on: WatchHandlers;

  constructor(pathOf: (dir: WatchedDir) => string, handlers: WatchHandlers) {
    this.#pathOf = pathOf;
    this.#on = handlers;
  }

  /** Watches every watched directory. */
  watchAll(): void {
    for (const dir of WATCHED_DIRS) this.#watch(dir);
  }

  /** Marks a directory's watch as stale (its directory was recreated): rewatch() replaces it. */
  invalidate(dir: WatchedDir): void {
    this.#unwatched.add(dir);
  }

  /** Re-arms the watches that failed or were invalidated. */
  rewatch(): void {
    for (const dir of [...this.#unwatched]) {
      this.#watchers.get(dir)?.close();
      this.#watchers.delete(dir);
      this.#watch(dir);
    }
  }

  close(): void {
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  #watch(dir: WatchedDir): void {
    const path = this.#pathOf(dir);
    try {
      const watcher = sfs.watchDirectory(
        path,
        (name) => this.#on.onName(dir, path, name),
        (err) => {
          this.#unwatched.add(dir);
          this.#on.onBroken(dir, path, err);
        },
      );
      this.#watchers.set(dir, watcher);
      this.#unwatched.delete(dir);
      this.#on.onArmed(dir);
    } catch (err) {
      this.#unwatched.add(dir);
      this.#on.onArmed(dir, err);
    }
  }
}
