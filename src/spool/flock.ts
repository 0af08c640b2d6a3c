/**
 * flock(2) for the server lock. Node has no flock(), so util-linux's flock(1)
 * is run on an fd this process keeps open: the lock belongs to that open file
 * description and lasts until the fd is closed (the process dies, however it
 * dies). Whether some process holds it is read from /proc/locks when that is
 * complete; otherwise tested with a shared lock held for a moment, which a
 * starting server tells apart from a server (see lock.ts).
 */
import { SpoolError, isErrno } from '../errors.js';
import * as sfs from './fs.js';

/** The program that takes the lock; util-linux's, found on PATH. */
export const FLOCK_PROGRAM = 'flock';
/** flock(1) exits with this when --nonblock finds the lock held (its default --conflict-exit-code). */
const FLOCK_CONFLICT_EXIT = 1;
/** The fd number the open lock file has in the flock(1) child. */
const CHILD_FD = 3;
/** /proc/self/ns/pid in the initial pid namespace (the kernel's PROC_PID_INIT_INO). */
const INIT_PID_NAMESPACE = 'pid:[4026531836]';

/**
 * Takes a flock(2) on the open file description behind `fd` without waiting:
 * true when taken, false when a conflicting lock is held. Throws SpoolError
 * when flock(1) cannot be run.
 * @example
 * if (!lockWithoutWaiting(fd, 'exclusive')) throw new Error('busy');
 */
export function lockWithoutWaiting(fd: number, kind: 'exclusive' | 'shared'): boolean {
  const outcome = runFlock(fd, kind);
  if (outcome instanceof Error) throw outcome;
  return outcome;
}

function runFlock(fd: number, kind: 'exclusive' | 'shared'): boolean | SpoolError {
  const run = childProcess().spawnSync(FLOCK_PROGRAM, [`--${kind}`, '--nonblock', String(CHILD_FD)], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
    encoding: 'utf8',
  });
  if (run.error !== undefined) {
    return new SpoolError(`cannot lock the spool: running ${FLOCK_PROGRAM}(1) failed (${run.error.message}); it comes with util-linux`, { cause: run.error });
  }
  if (run.status === 0) return true;
  if (run.status === FLOCK_CONFLICT_EXIT) return false;
  return new SpoolError(`cannot lock the spool: ${FLOCK_PROGRAM}(1) exited with ${run.status ?? run.signal}: ${run.stderr.trim()}`);
}

/**
 * Whether some process holds an exclusive flock(2) on the lock file at `path`.
 * From /proc/locks when it lists the file, or when this process is in the
 * initial pid namespace (elsewhere the kernel hides locks whose taker, here a
 * flock(1) that has exited, is not a process of this namespace). Otherwise by
 * taking a shared lock on a fresh read-only fd and closing it at once.
 * Undefined when it cannot tell (flock(1) cannot run, the file cannot be opened).
 */
export function isLockedExclusively(path: string, dev: number, ino: number): boolean | undefined {
  const procLocks = sfs.readSmallTextFile('/proc/locks');
  if (procLocks !== undefined) {
    if (listsFile(flockedFiles(procLocks), dev, ino)) return true;
    if (sfs.readLinkIfAny('/proc/self/ns/pid') === INIT_PID_NAMESPACE) return false;
  }
  let file: sfs.OpenLockFile | undefined;
  try {
    file = sfs.openLockFileToTest(path);
  } catch (err) {
    if (isErrno(err, 'EACCES') || isErrno(err, 'EPERM')) return undefined;
    throw err;
  }
  if (file === undefined) return false;
  try {
    const shared = runFlock(file.fd, 'shared');
    return shared instanceof Error ? undefined : !shared;
  } finally {
    sfs.closeFile(file); // drops the shared lock
  }
}

/**
 * A lock on a file of an overlay or other anonymous-device file system (major
 * 0) may be listed under that device while stat(2) gives the underlying one:
 * there the inode number alone decides.
 */
function listsFile(files: Set<string>, dev: number, ino: number): boolean {
  if (files.has(fileKey(dev, ino))) return true;
  for (const key of files) if (key.startsWith('0:') && key.endsWith(`:${ino}`)) return true;
  return false;
}

/** A file as /proc/locks names it: `major:minor:inode`, all decimal. */
export function fileKey(dev: number | bigint, ino: number | bigint): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n); // glibc's gnu_dev_major()
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n); // and gnu_dev_minor()
  return `${major}:${minor}:${BigInt(ino)}`;
}

/**
 * The files with a FLOCK lock in /proc/locks text, as fileKey() names them.
 * Lines look like `1: FLOCK  ADVISORY  WRITE 14021 fe:00:5343316 0 EOF`
 * (device numbers in hex); blocked waiters (`1: -> FLOCK …`) hold nothing.
 * @example
 * flockedFiles('1: FLOCK  ADVISORY  WRITE 7 fe:00:42 0 EOF\n'); // Set { '254:0:42' }
 */
export function flockedFiles(procLocks: string): Set<string> {
  const files = new Set<string>();
  for (const line of procLocks.split('\n')) {
    const match = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+-?\d+\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (match === null) continue;
    files.add(`${parseInt(match[1]!, 16)}:${parseInt(match[2]!, 16)}:${match[3]!}`);
  }
  return files;
}

/**
 * node:child_process, loaded at the first lock: `wq enqueue` and `wq wait`
 * import this module (through the lock's readers) but rarely spawn flock(1),
 * and loading child_process costs every call about 2.5 ms (see rollup.config.js).
 */
function childProcess(): typeof import('node:child_process') {
  return process.getBuiltinModule('node:child_process');
}
