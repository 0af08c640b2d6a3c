/**
 * The server's watches: the directories clients write to, and the spool
 * directory itself (for the layout guard). fs.watch is fast but may drop
 * events (inotify overflows) or fail (EMFILE, a recreated directory); a watch
 * that failed is remembered and re-armed by rewatch(), and the server's
 * rescans and layout checks cover what it missed meanwhile.
 */
import type { FSWatcher } from 'node:fs';
import type { SpoolDir } from '../layout.js';
import * as sfs from '../fs.js';

/** The directories the server watches for new entries. */
export type WatchedDir = Extract<SpoolDir, 'requested' | 'aborting'>;
export const WATCHED_DIRS: readonly WatchedDir[] = ['requested', 'aborting'];
/** What the server watches: those directories, and `spool`, the spool directory itself. */
export type WatchTarget = WatchedDir | 'spool';
const WATCH_TARGETS: readonly WatchTarget[] = [...WATCHED_DIRS, 'spool'];

export interface WatchHandlers {
  /** A name appeared in or left the directory at `path`; null when the system could not say which. */
  onName(target: WatchTarget, path: string, name: string | null): void;
  /** A watch stopped working after it was set up; it is re-armed at the next rewatch(). */
  onBroken(target: WatchTarget, path: string, err: Error): void;
  /** Setting up a watch succeeded, or failed (it is retried at the next rewatch()). */
  onArmed(target: WatchTarget, err?: unknown): void;
}

export class DirectoryWatchers {
  readonly #watchers = new Map<WatchTarget, FSWatcher>();
  /** Targets without a working watch: it failed, or the directory was recreated. */
  readonly #unwatched = new Set<WatchTarget>();
  readonly #pathOf: (target: WatchTarget) => string;
  readonly #on: WatchHandlers;
  /** After close(), nothing is watched again (a late rewatch() must not leave a watch open). */
  #closed = false;

  constructor(pathOf: (target: WatchTarget) => string, handlers: WatchHandlers) {
    this.#pathOf = pathOf;
    this.#on = handlers;
  }

  /** Watches every target. */
  watchAll(): void {
    if (this.#closed) return;
    for (const target of WATCH_TARGETS) this.#watch(target);
  }

  /** Marks a directory's watch as stale (its directory was recreated): rewatch() replaces it. */
  invalidate(dir: WatchedDir): void {
    this.#unwatched.add(dir);
  }

  /** Re-arms the watches that failed or were invalidated. */
  rewatch(): void {
    if (this.#closed) return;
    for (const dir of [...this.#unwatched]) {
      this.#watchers.get(dir)?.close();
      this.#watchers.delete(dir);
      this.#watch(dir);
    }
  }

  close(): void {
    this.#closed = true;
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  #watch(dir: WatchTarget): void {
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
