/**
 * The server's inbox: the names seen in requested/ and aborting/ (reported by
 * the watchers, or found by a rescan) that a tick has yet to look at.
 * Invariants: a name is looked at by a tick at least once after it appears
 * (the periodic rescan is the safety net for a watcher that drops events); the
 * server's own moves out of requested/ are not new requests; an entry the
 * watcher never reported is counted as missed only after a second periodic rescan.
 */
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../../logger.js';
import type { ServerMetrics } from '../../metrics.js';
import type { RequestBook } from './book.js';
import type { WatchedDir } from './directory-watchers.js';
import type { SpoolPaths } from '../layout.js';
import { isRequestId } from '../request-id.js';
import * as sfs from '../fs.js';

/** What take…() returns when nothing was seen: no allocation per tick. */
const NONE: readonly string[] = Object.freeze([]);

export interface InboxDeps {
  paths: SpoolPaths;
  book: RequestBook;
  log: Logger;
  metrics: ServerMetrics;
  /** Whether watchers run: only then does a periodic rescan judge them. */
  watch: boolean;
  /** Runs a step outside a tick: a fault is logged once and retried later. */
  safely(step: string, run: () => void): void;
  /** Asks for a tick. */
  schedule(): void;
}

export class Inbox {
  readonly #d: InboxDeps;
  /** Names reported by the watchers or rescans, not yet looked at. */
  #requested = new Set<string>();
  #aborts = new Set<string>();
  /** Entries a periodic rescan found before the watcher reported them (see rescan). */
  readonly #unreported = new Set<string>();
  /** Ids this server moved out of requested/ since the last periodic rescan: their move-out events are not new requests. */
  #movedOut = new Set<string>();
  /** Invalid names already logged, as `dir/name`, so each is logged once. */
  readonly #warnedNames = new Set<string>();

  constructor(deps: InboxDeps) {
    this.#d = deps;
  }

  /** The names seen in requested/ since the last call, in id order (so arrival order). */
  takeRequested(): readonly string[] {
    if (this.#requested.size === 0) return NONE;
    const names = [...this.#requested].sort();
    this.#requested = new Set();
    return names;
  }

  /** The names seen in aborting/ since the last call, in order. */
  takeAborts(): readonly string[] {
    if (this.#aborts.size === 0) return NONE;
    const names = [...this.#aborts].sort();
    this.#aborts = new Set();
    return names;
  }

  /** Names a tick could not look at (a fault part-way): looked at again at the next tick. */
  putBack(dir: WatchedDir, names: readonly string[]): void {
    const set = dir === 'requested' ? this.#requested : this.#aborts;
    for (const name of names) set.add(name);
  }

  /** The server moves (or answers) `id` out of requested/: the event that follows is not a new request. */
  movedOut(id: string): void {
    this.#movedOut.add(id);
  }

  /** Whether `id` left requested/ by the server's own hand since the last periodic rescan. */
  isOwnMove(id: string): boolean {
    return this.#movedOut.has(id);
  }

  /** Ignores (and logs once) names that are not request ids: dotfiles, editors' droppings, hostile names. */
  checkName(dir: string, name: string): boolean {
    if (isRequestId(name)) return true;
    if (!this.#warnedNames.has(`${dir}/${name}`)) {
      this.#warnedNames.add(`${dir}/${name}`);
      this.#d.log.warn('ignoring an entry whose name is not a request id', { dir, name: JSON.stringify(name) });
    }
    return false;
  }

  /** A watcher's report: `name` changed in `dir` (null: unknown, rescan). */
  onWatchEvent(dir: WatchedDir, path: string, name: string | null): void {
    if (name === null) this.rescan();
    else if (name !== basename(path)) {
      // (An event named after the directory itself is its own removal: the layout check handles that.)
      (dir === 'requested' ? this.#requested : this.#aborts).add(name);
      // A late event clears a suspect; the one for the server's own move out of dir does not.
      if (this.#unreported.size > 0 && this.#unreported.has(join(path, name))) {
        this.#d.safely('watching', () => {
          if (sfs.entryExists(join(path, name))) this.#unreported.delete(join(path, name));
        });
      }
    }
    this.#d.schedule();
  }

  /**
   * The safety net: re-reads requested/ and aborting/ for anything the watcher
   * missed. A periodic rescan also judges the watcher: an entry it finds
   * unreported is only a suspect (its event may still be queued), counted as
   * missed at the next periodic rescan unless the watcher reports it meanwhile.
   * A directory that cannot be read is logged once and read again next time.
   * @param judge whether entries not reported yet become suspects
   */
  rescan(periodic = false, judge = periodic && this.#d.watch): void {
    const { paths, book, safely } = this.#d;
    if (periodic) this.#movedOut = new Set(); // bounded: a rescan re-reads requested/ anyway
    if (periodic && this.#d.watch) this.#countMissed();
    const { requested, aborting, complete } = paths.dirs;
    safely('rescan of requested/', () => {
      const names = sfs.listEntries(requested);
      for (const name of names) {
        if (judge && !this.#requested.has(name) && this.#isNewRequest(name)) this.#unreported.add(join(requested, name));
        this.#requested.add(name);
      }
      if (periodic) this.#forgetWarnedNames('requested', names);
    });
    safely('rescan of aborting/', () => {
      const names = sfs.listEntries(aborting);
      for (const name of names) {
        if (judge && !this.#aborts.has(name) && isRequestId(name) && book.get(name)?.stage !== 'tombstone' && !book.isPlanted('aborting', name)) this.#unreported.add(join(aborting, name));
        this.#aborts.add(name);
      }
      if (periodic) this.#forgetWarnedNames('aborting', names);
    });
    safely('rescan of complete/', () => {
      book.unclaimedResults = sfs.listEntries(complete).filter(isRequestId).length;
    });
    this.#d.schedule();
  }

  /** Whether a name in requested/ is a request the server has yet to take in (not one it holds or ignores). */
  #isNewRequest(name: string): boolean {
    return isRequestId(name) && !this.#d.book.held(name) && !this.#d.book.isPlanted('requested', name);
  }

  /** Counts and logs the suspects of the last periodic rescan that the watcher never reported. */
  #countMissed(): void {
    if (this.#unreported.size === 0) return;
    let requested = 0;
    for (const path of this.#unreported) if (dirname(path) === this.#d.paths.dirs.requested) requested++;
    const aborting = this.#unreported.size - requested;
    this.#unreported.clear();
    this.#d.metrics.watcherMissed('requested', requested);
    this.#d.metrics.watcherMissed('aborting', aborting);
    this.#d.log.warn('the file watcher missed entries; the rescan found them', { requested, aborting });
  }

  /** Forgets warned names no longer in `dir`, so the set stays as small as the junk that is there. */
  #forgetWarnedNames(dir: WatchedDir, present: readonly string[]): void {
    const here = new Set(present);
    for (const key of this.#warnedNames) {
      if (key.startsWith(`${dir}/`) && !here.has(key.slice(dir.length + 1))) this.#warnedNames.delete(key);
    }
  }
}
