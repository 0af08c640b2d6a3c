/**
 * The server lock: `server.lock` holds the owner's pid, host and boot id and is
 * created by link(2), so exactly one creator wins. A lock whose owner is gone
 * (no such pid, or the machine rebooted since) is stale and may be taken over;
 * take-overs are serialised by a short-lived `server.lock.steal` file so two
 * starting servers cannot both replace the same stale lock.
 */
import { hostname } from 'node:os';
import { ProtocolError, SpoolLockedError, SpoolError, isErrno } from '../errors.js';
import type { SpoolPaths } from './layout.js';
import * as sfs from './fs.js';

/** A steal marker older than this is itself stale (its maker died mid-take-over). */
export const STEAL_MARKER_STALE_MS = 30_000;
const MAX_LOCK_BYTES = 64 * 1024;

export interface LockOwner {
  pid: number;
  host: string;
  /** Linux boot id; a different one means the owner died with the previous boot. */
  bootId?: string;
  startedAt: number;
  /** Free-form facts for `wq status` (max tasks, manager kind …). */
  info?: Record<string, unknown>;
}

export interface HeldLock {
  readonly owner: LockOwner;
  /**
   * Whether the lock file still names us (another process could only replace it
   * by force). Throws when the lock cannot be read now (EACCES, EMFILE …): a
   * fault to retry, not a lost lock.
   */
  stillHeld(): boolean;
  release(): void;
}

let cachedBootId: string | undefined | null = null;
export function currentBootId(): string | undefined {
  if (cachedBootId === null) cachedBootId = sfs.readSmallTextFile('/proc/sys/kernel/random/boot_id')?.trim() || undefined;
  return cachedBootId;
}

/** Reads the lock's owner; undefined when there is no lock or it is unreadable garbage. */
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

/** Whether the owner is certainly gone. A lock from another host is never judged stale. */
export function isOwnerGone(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  const boot = currentBootId();
  if (owner.bootId !== undefined && boot !== undefined && owner.bootId !== boot) return true;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return true;
    return false; // EPERM: alive, owned by someone else
  }
}

export function acquireLock(paths: SpoolPaths, info: Record<string, unknown> = {}): HeldLock {
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: Date.now(), info };
  const boot = currentBootId();
  if (boot !== undefined) owner.bootId = boot;
  const text = JSON.stringify(owner);
  for (let attempt = 0; attempt < 3; attempt++) {
    const temp = sfs.writeTemp(paths.dirs.tmp, 'lock', Buffer.from(text));
    if (sfs.publish(temp, paths.lockFile)) return heldLock(paths, owner, text);
    const current = readLockOwner(paths);
    if (current !== undefined && !isOwnerGone(current)) throw new SpoolLockedError(paths.root, current.pid, current.host);
    removeStaleLock(paths, current);
  }
  throw new SpoolError(`could not take the lock of spool ${paths.root}: it kept changing hands`);
}

/**
 * A lock that is not a readable JSON file (garbage, a FIFO, a symlink, an empty
 * directory someone planted) names no owner and is removed like a stale one,
 * never followed; a non-empty directory there is refused.
 */
function removeStaleLock(paths: SpoolPaths, judged: LockOwner | undefined): void {
  const marker = `${paths.lockFile}.steal`;
  if (!sfs.createEmptyExclusive(marker)) {
    const stat = sfs.entryStat(marker);
    if (stat !== undefined && Date.now() - stat.mtimeMs > STEAL_MARKER_STALE_MS) removeOrRefuse(paths, marker);
    return; // someone else is taking over right now; the caller retries
  }
  try {
    // Re-read under the marker: only remove the very lock we judged stale.
    const now = readLockOwner(paths);
    if (JSON.stringify(now) === JSON.stringify(judged)) removeOrRefuse(paths, paths.lockFile);
  } finally {
    sfs.removeEntry(marker);
  }
}

function removeOrRefuse(paths: SpoolPaths, path: string): void {
  if (sfs.removeAnyEntry(path) === 'kept') throw new SpoolError(`spool ${paths.root}: ${path} is a non-empty directory, not a lock; remove it`);
}

function heldLock(paths: SpoolPaths, owner: LockOwner, text: string): HeldLock {
  let released = false;
  return {
    owner,
    stillHeld: () => {
      let bytes: Buffer | undefined;
      try {
        bytes = sfs.readEntry(paths.lockFile, MAX_LOCK_BYTES);
      } catch (err) {
        if (err instanceof ProtocolError) return false; // not a regular file, or too large: not ours
        throw err;
      }
      return bytes !== undefined && bytes.toString('utf8') === text;
    },
    release: () => {
      if (released) return;
      released = true;
      const bytes = safeRead(paths.lockFile);
      if (bytes !== undefined && bytes.toString('utf8') === text) sfs.removeEntry(paths.lockFile);
    },
  };
}

function safeRead(path: string): Buffer | undefined {
  try {
    return sfs.readEntry(path, MAX_LOCK_BYTES);
  } catch {
    return undefined;
  }
}
