/**
 * The server lock: a server holds a flock(2) on `server.lock` for as long as it
 * lives. The kernel drops it when the server's fd closes, however the server
 * dies, so liveness is a kernel fact, not a pid guess (a reused pid, a pid
 * namespace, SIGKILL are moot), and LOCK_EX|LOCK_NB has exactly one winner: no
 * stale lock is ever removed. Only a holder unlinks the file (at release), and
 * a winner keeps its lock only if the name still leads to the file it locked.
 */
import { hostname } from 'node:os';
import type { Stats } from 'node:fs';
import { SpoolLockedError, SpoolError, isErrno } from '../errors.js';
import type { SpoolPaths } from './layout.js';
import { isLockedExclusively, lockWithoutWaiting } from './flock.js';
import { describeFileSystem, isNetworkFileSystem } from './mount.js';
import * as sfs from './fs.js';

/** Attempts before giving up when the lock file keeps being replaced under us. */
export const LOCK_ATTEMPTS = 5;
/**
 * How long a starting server keeps retrying while only shared locks (readers
 * asking whether a server runs, each for a moment) keep it from the lock, and
 * the pause between tries.
 */
export const LOCK_BUSY_LIMIT_MS = 5_000;
export const LOCK_BUSY_PAUSE_MS = 5;
const MAX_LOCK_BYTES = 64 * 1024;

export interface LockOwner {
  pid: number;
  host: string;
  /** Linux boot id; a different one means the owner died with the previous boot. */
  bootId?: string;
  /** The owner's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid apart. */
  startTicks?: number;
  startedAt: number;
  /** Free-form facts for `wq status` (max tasks, manager kind …). */
  info?: Record<string, unknown>;
}

export interface HeldLock {
  readonly owner: LockOwner;
  /**
   * Whether `server.lock` is still the file this server locked (it can only be
   * unlinked or replaced by hand). Cheap: one lstat. Throws when it cannot be
   * looked at now (EACCES …): a fault to retry, not a lost lock.
   */
  stillHeld(): boolean;
  release(): void;
}

let cachedBootId: string | undefined | null = null;
export function currentBootId(): string | undefined {
  if (cachedBootId === null) cachedBootId = sfs.readSmallTextFile('/proc/sys/kernel/random/boot_id')?.trim() || undefined;
  return cachedBootId;
}

/** A process's start time in clock ticks since boot; undefined without /proc or when it is gone. */
export function processStartTicks(pid: number | 'self'): number | undefined {
  const stat = sfs.readSmallTextFile(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // "<pid> (<comm>) <state> …": comm may hold spaces or parentheses; field 22 is the 20th after it.
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

/** Reads the owner facts in the lock; undefined when there is no lock or it is unreadable garbage. */
export function readLockOwner(paths: SpoolPaths): LockOwner | undefined {
  let bytes: Buffer | undefined;
  try {
    bytes = sfs.readEntry(paths.lockFile, MAX_LOCK_BYTES);
  } catch {
    return undefined;
  }
  if (bytes === undefined) return undefined;
  try {
    const owner = JSON.parse(bytes.toString('utf8')) as LockOwner;
    return isPid(owner.pid) && typeof owner.host === 'string' ? owner : undefined;
  } catch {
    return undefined;
  }
}

/** Linux pids are 1 … 2^22; anything else (0 or -1 would signal a process group) is garbage. */
const MAX_PID = 4_194_304;
function isPid(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= MAX_PID;
}

/**
 * Whether a server holds the spool's lock now (see flock.ts: it never makes a
 * starting server fail). A lock naming another host counts as held: this host
 * cannot tell. Where the kernel cannot be asked, the recorded pid decides.
 * @example
 * if (!isServing(paths, readLockOwner(paths))) console.error('no server is running');
 */
export function isServing(paths: SpoolPaths, owner: LockOwner | undefined): boolean {
  if (owner !== undefined && owner.host !== hostname()) return true;
  const { type, dev, ino } = sfs.identifyEntry(paths.lockFile);
  if (type !== 'other' || dev === undefined || ino === undefined) return false;
  return isLockedExclusively(paths.lockFile, dev, ino) ?? (owner !== undefined && isOwnerProcessAlive(owner));
}

/** Without the kernel's word: the recorded pid, on this boot, with the recorded start time. */
function isOwnerProcessAlive(owner: LockOwner): boolean {
  const boot = currentBootId();
  if (owner.bootId !== undefined && boot !== undefined && owner.bootId !== boot) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false; // EPERM: alive, owned by someone else
  }
  const ticks = owner.startTicks === undefined ? undefined : processStartTicks(owner.pid);
  return ticks === undefined || ticks === owner.startTicks;
}

/**
 * Takes the spool's lock or throws SpoolLockedError naming the holder. A
 * leftover lock file (a crashed server's, an older version's JSON lock,
 * garbage) is simply locked and rewritten.
 * @example
 * const lock = acquireLock(paths, { maxTasks: 4 });
 * try { serve(); } finally { lock.release(); }
 */
export function acquireLock(paths: SpoolPaths, info: Record<string, unknown> = {}): HeldLock {
  const busyUntil = Date.now() + LOCK_BUSY_LIMIT_MS;
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; ) {
    const opened = sfs.openLockFile(paths.lockFile);
    if (!('fd' in opened)) {
      clearNonFile(paths, opened);
      attempt++;
      continue;
    }
    const outcome = tryLock(paths, opened, info);
    if (outcome === 'replaced') attempt++;
    else if (outcome !== 'shared') return outcome;
    else if (Date.now() < busyUntil) pauseMs(LOCK_BUSY_PAUSE_MS);
    else throw new SpoolError(`could not take the lock of spool ${paths.root}: processes asking whether a server runs kept it busy for ${LOCK_BUSY_LIMIT_MS} ms`);
  }
  throw new SpoolError(`could not take the lock of spool ${paths.root}: it kept changing hands`);
}

/**
 * Locks the open file. `replaced`: it was unlinked or replaced meanwhile;
 * `shared`: only readers' momentary shared locks stood in the way. The caller retries.
 */
function tryLock(paths: SpoolPaths, file: sfs.OpenLockFile, info: Record<string, unknown>): HeldLock | 'replaced' | 'shared' {
  let kept = false;
  try {
    if (!lockWithoutWaiting(file.fd, 'exclusive')) {
      if (isLockedExclusively(paths.lockFile, file.dev, file.ino) === false) return 'shared';
      const holder = readLockOwner(paths);
      throw new SpoolLockedError(paths.root, holder?.pid, holder?.host);
    }
    // A holder unlinks the file at release: a file no longer at the name guards nothing.
    if (!sfs.isSameFile(file, paths.lockFile)) return 'replaced';
    const previous = readLockOwner(paths);
    if (previous !== undefined && previous.host !== hostname() && mayBeSharedWithOtherHosts(paths)) throw new SpoolLockedError(paths.root, previous.pid, previous.host);
    const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: Date.now(), info };
    const boot = currentBootId();
    if (boot !== undefined) owner.bootId = boot;
    const ticks = processStartTicks('self');
    if (ticks !== undefined) owner.startTicks = ticks;
    sfs.rewriteOpenFile(file, Buffer.from(JSON.stringify(owner)));
    kept = true;
    return heldLock(paths, file, owner);
  } finally {
    if (!kept) sfs.closeFile(file);
  }
}

/**
 * Whether the spool's file system may be mounted by other hosts, whose flock(2)
 * this host may not see. On a local file system a lock naming another host was
 * left by this very machine under another name (a re-created container, a
 * renamed host): the kernel lock we just won is the whole truth. Where the file
 * system cannot be told, assume it may be shared.
 */
function mayBeSharedWithOtherHosts(paths: SpoolPaths): boolean {
  const info = describeFileSystem(paths.root);
  return info === undefined || isNetworkFileSystem(info);
}

/** Blocks the thread: acquireLock is synchronous, and this wait is a few ms at server start. */
function pauseMs(durationMs: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, durationMs);
}

/**
 * Something planted at `server.lock` that is not a regular file (a FIFO, a
 * symlink, an empty directory) is no server's lock: it is removed, never
 * followed or opened. It is renamed aside first and judged there, so a real
 * lock file another starter created at the name meanwhile is put back, not
 * removed. A non-empty directory is refused.
 */
function clearNonFile(paths: SpoolPaths, found: Stats): void {
  const refuse = (where: string): SpoolError => new SpoolError(`spool ${paths.root}: ${where} is a non-empty directory, not a lock; remove it`);
  if (found.isDirectory()) {
    if (sfs.removeDirectoryOnly(paths.lockFile) === 'kept') throw refuse(paths.lockFile);
    return;
  }
  const aside = sfs.moveAside(paths.lockFile, paths.dirs.tmp, 'lock-aside');
  if (aside === undefined) return;
  if (sfs.entryStat(aside)?.isFile() === true) {
    // Its holder, should the name be taken again meanwhile, sees its file gone at its next check and stops.
    sfs.linkExclusive(aside, paths.lockFile);
    sfs.removeEntry(aside);
  } else if (sfs.removeAnyEntry(aside) === 'kept') {
    throw refuse(aside);
  }
}

function heldLock(paths: SpoolPaths, file: sfs.OpenLockFile, owner: LockOwner): HeldLock {
  let released = false;
  return {
    owner,
    stillHeld: () => !released && sfs.isSameFile(file, paths.lockFile),
    release: () => {
      if (released) return;
      released = true;
      try {
        // Unlinked while still locked, and only if it is ours: see the module comment.
        if (sfs.isSameFile(file, paths.lockFile)) sfs.removeEntry(paths.lockFile);
      } finally {
        sfs.closeFile(file);
      }
    },
  };
}
