/**
 * Guards the spool's layout for the server: before a tick touches the spool,
 * the spool must still be the directory the server started on, with real
 * state directories that no one but the server's user and root can rename
 * (protocol.ts: checkLayout decides). A state directory a
 * tmp cleaner removed is recreated, with its mode, once two periodic checks in
 * a row found it missing; a replaced or recreated one is adopted.
 *
 * The check costs eight lookups. While a watch on the spool directory is live
 * (see watched()), a tick repeats it only after that watch reported a change
 * in the spool directory (a state directory renamed, removed or created, the
 * spool itself moved or removed), or when LAYOUT_RECHECK_MS have passed (a
 * watch can drop events); without one, at every tick.
 */
import { SpoolError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { checkLayout } from '../../protocol.js';
import type { FaultLog } from './fault-log.js';
import { observeLayout, type LayoutObservation, type SpoolDir, type SpoolPaths } from '../layout.js';
import * as sfs from '../fs.js';
import type { ServerIdentity } from '../access.js';

/** With a live watch on the spool directory, the longest a tick goes on the last check's verdict. */
export const LAYOUT_RECHECK_MS = 250;

export interface LayoutGuardHooks {
  log: Logger;
  faults: FaultLog;
  /** The spool is gone, replaced, or leads out of itself: the server must stop. */
  stop(err: Error): void;
  /** A directory was replaced or recreated and is now the one to serve: re-read it, re-watch it. */
  adopted(dir: SpoolDir): void;
}

export class LayoutGuard {
  readonly #paths: SpoolPaths;
  readonly #on: LayoutGuardHooks;
  /** The spool and its directories as the server found them at start (updated when one is adopted). */
  readonly #layout: LayoutObservation;
  /** State directories found missing, with how many periodic checks in a row found them so. */
  readonly #missing = new Map<SpoolDir, number>();
  /** A watch on the spool directory is live, and nothing it reported has been checked yet (#changed). */
  #watched = false;
  #changed = true;
  /** When the last check found the layout servable (0: it did not). */
  #lastGoodCheck = 0;

  /** Who the server runs as: only this user and root may be able to rename a state directory. */
  readonly #who: ServerIdentity;

  constructor(paths: SpoolPaths, hooks: LayoutGuardHooks, who: ServerIdentity) {
    this.#paths = paths;
    this.#on = hooks;
    this.#who = who;
    this.#layout = observeLayout(paths);
  }

  /**
   * Checks the layout now; stops the server if it cannot be served (see
   * checkLayout). False when nothing may touch the spool: the check itself
   * failed, or a directory is missing (see recreateMissing).
   * @param periodic counts this check towards recreating a missing directory
   */
  check(periodic = false, now = Date.now()): boolean {
    if (!periodic && this.#watched && !this.#changed && this.#lastGoodCheck > 0 && now - this.#lastGoodCheck < LAYOUT_RECHECK_MS) return true;
    this.#changed = false; // before looking: a change reported while we look is looked at next time
    this.#lastGoodCheck = 0;
    let verdict: ReturnType<typeof checkLayout<SpoolDir>>;
    try {
      verdict = checkLayout(this.#layout, observeLayout(this.#paths), this.#who.uid, this.#who.privateGids);
      this.#on.faults.succeeded('spool check');
    } catch (err) {
      this.#on.faults.failed('spool check', err); // cannot tell (EACCES on the spool): touch nothing until we can
      return false;
    }
    if (verdict.kind === 'stop') {
      this.#on.stop(new SpoolError(`spool ${this.#paths.root}: ${verdict.reason}; stopping`));
      return false;
    }
    for (const dir of verdict.replaced) {
      if (this.#missing.delete(dir)) this.#on.log.info('a missing spool directory is back', { dir });
      else this.#on.log.warn('a spool directory was replaced while the server ran; using the new one', { dir });
      this.#adopt(dir);
    }
    for (const dir of verdict.recreate) {
      if (!this.#missing.has(dir)) {
        this.#missing.set(dir, 0);
        this.#on.log.error('a spool directory is missing (removed by hand or by a tmp cleaner?); it is made again if it stays missing', { dir });
      }
      if (periodic) this.#missing.set(dir, this.#missing.get(dir)! + 1);
    }
    if (verdict.recreate.length > 0) return false;
    this.#lastGoodCheck = now;
    return true;
  }

  /**
   * Whether a watch on the spool directory is live. Only then may a tick skip
   * the check; never when the spool is reached through a symlink (the watch
   * follows it, and would not see the symlink itself change).
   */
  watched(live: boolean): void {
    this.#watched = live && sfs.entryStat(this.#paths.root)?.isSymbolicLink() === false;
    this.#changed = true;
  }

  /** The watch on the spool directory reported a change: the next tick checks. */
  changed(): void {
    this.#changed = true;
  }

  /**
   * Recreates, with its mode, each directory found missing at two periodic
   * checks in a row: a tmp cleaner removed it. (A spool being removed as a whole
   * loses its lock, or itself, in between, and the server stops instead of
   * fighting the removal.) True if any was recreated.
   */
  recreateMissing(): boolean {
    let any = false;
    for (const [dir, checks] of this.#missing) {
      if (checks < 2) continue;
      try {
        sfs.makeDirectoryWithMode(this.#paths.dirs[dir], this.#layout.dirs[dir].mode ?? 0o777);
        this.#on.faults.succeeded(`recreating ${dir}/`);
      } catch (err) {
        this.#on.faults.failed(`recreating ${dir}/`, err, { dir });
        continue;
      }
      this.#missing.delete(dir);
      this.#on.log.warn('recreated a missing spool directory', { dir });
      this.#adopt(dir);
      any = true;
    }
    return any;
  }

  /** Takes a recreated or replaced directory as the one to serve. */
  #adopt(dir: SpoolDir): void {
    try {
      this.#layout.dirs[dir] = sfs.identifyEntry(this.#paths.dirs[dir]);
      this.#on.faults.succeeded(`adopting ${dir}/`);
    } catch (err) {
      this.#on.faults.failed(`adopting ${dir}/`, err);
      return;
    }
    this.#on.adopted(dir);
  }
}
