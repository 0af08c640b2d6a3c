/**
 * The server lock's file and the server state file it rewrites in place: opened
 * without following a symlink or blocking on a FIFO, compared by identity
 * (dev, ino) with what the name holds now.
 * Part of the one door to the file system for spool work (spool/fs.ts).
 */
import * as fs from 'node:fs';
import { isErrno } from '../../errors.js';
import { entryStat, identifyEntry } from './entries.js';

const { O_NOFOLLOW, O_NONBLOCK, O_CREAT, O_RDONLY } = fs.constants;
const READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;

/** An open lock file: its fd (O_CLOEXEC, as Node opens every fd) and what fstat said. */
export interface OpenLockFile {
  fd: number;
  dev: number;
  ino: number;
}

const LOCK_OPEN_FLAGS = fs.constants.O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK;

/**
 * Opens (creating if missing, never truncating) a lock file for reading and
 * writing. Returns the fs.Stats of what is there instead when it is not a
 * regular file: lstat first, so a device is never opened; O_NOFOLLOW and
 * O_NONBLOCK, then fstat, for what is swapped in meanwhile (a symlink is not
 * followed, a FIFO not blocked on).
 */
export function openLockFile(path: string, mode = 0o644): OpenLockFile | fs.Stats {
  const before = entryStat(path);
  if (before !== undefined && !before.isFile()) return before;
  let fd: number;
  try {
    fd = fs.openSync(path, LOCK_OPEN_FLAGS, mode);
  } catch (err) {
    // Swapped for a symlink, directory or socket between the lstat and the open.
    if (isErrno(err, 'ELOOP') || isErrno(err, 'EISDIR') || isErrno(err, 'ENXIO')) return entryStat(path) ?? openLockFile(path, mode);
    throw err;
  }
  const stat = fs.fstatSync(fd);
  if (stat.isFile()) return { fd, dev: stat.dev, ino: stat.ino };
  fs.closeSync(fd);
  return stat;
}

/** Whether `path` (not followed) is the very file open as `file`; false when it is gone (ENOENT, ENOTDIR). */
export function isSameFile(file: OpenLockFile, path: string): boolean {
  const { type, dev, ino } = identifyEntry(path);
  return type === 'other' && dev === file.dev && ino === file.ino;
}

/** Replaces an open file's contents: written from offset 0, then cut to length (a reader sees old, new, or a mix that fails to parse). */
export function rewriteOpenFile(file: OpenLockFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += fs.writeSync(file.fd, bytes, offset, bytes.length - offset, offset);
  fs.ftruncateSync(file.fd, bytes.length);
}

export function closeFile(file: OpenLockFile): void {
  fs.closeSync(file.fd);
}

/** Opens an existing lock file read-only, to test its lock; undefined when it is gone (ENOENT) or not a regular file. */
export function openLockFileToTest(path: string): OpenLockFile | undefined {
  const before = entryStat(path);
  if (before === undefined || !before.isFile()) return undefined;
  let fd: number;
  try {
    fd = fs.openSync(path, READ_FLAGS);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP') || isErrno(err, 'ENXIO')) return undefined; // gone or swapped meanwhile
    throw err;
  }
  const stat = fs.fstatSync(fd);
  if (stat.isFile()) return { fd, dev: stat.dev, ino: stat.ino };
  fs.closeSync(fd);
  return undefined;
}
