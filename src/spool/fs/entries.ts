/**
 * What is at a name, and removing it: lstat-based looks that never follow a
 * symlink, removals that never descend into a directory, and the few path
 * and directory helpers the spool's set-up needs.
 * Part of the one door to the file system for spool work (spool/fs.ts).
 */
import * as fs from 'node:fs';
import { isErrno } from '../../errors.js';
import type { EntryIdentity } from '../../protocol.js';

export type { EntryIdentity } from '../../protocol.js';

/** Describes an entry that is not a regular file, for error messages: "a FIFO", "a symbolic link" … */
export function describeEntry(stat: fs.Stats): string {
  if (stat.isSymbolicLink()) return 'a symbolic link';
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  if (stat.isBlockDevice() || stat.isCharacterDevice()) return 'a device';
  return 'not a regular file';
}


/**
 * Identifies the entry at `path`: lstat, or stat (following a symlink) with
 * `follow` (for the spool directory itself, which may be reached by one).
 * ENOENT and ENOTDIR (a parent is gone or replaced) read as missing; other errors are thrown.
 */
export function identifyEntry(path: string, follow = false): EntryIdentity {
  let stat: fs.Stats | undefined;
  try {
    stat = follow ? fs.statSync(path, { throwIfNoEntry: false }) : fs.lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    if (isErrno(err, 'ENOTDIR') || isErrno(err, 'ENOENT')) return { type: 'missing' };
    throw err;
  }
  if (stat === undefined) return { type: 'missing' };
  const type = stat.isDirectory() ? 'directory' : stat.isSymbolicLink() ? 'symlink' : 'other';
  return { type, dev: stat.dev, ino: stat.ino, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, nlink: stat.nlink };
}

/** Whether a name exists in a directory, without following symlinks (no exception on ENOENT: this is a hot path). */
export function entryExists(path: string): boolean {
  return fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

/** Status of an entry without following symlinks; undefined if it does not exist. */
export function entryStat(path: string): fs.Stats | undefined {
  return fs.lstatSync(path, { throwIfNoEntry: false });
}

/** Names in a directory, unsorted. */
export function listEntries(dir: string): string[] {
  return fs.readdirSync(dir);
}

/**
 * What removeAnyEntry did: `removed`; `absent` (it was already gone, ENOENT);
 * `kept`: a non-empty directory, which is never descended into.
 */
export type Removal = 'removed' | 'absent' | 'kept';

/** Removes an entry; false if it was already gone (ENOENT). Never removes a directory. */
export function removeEntry(path: string): boolean {
  try {
    fs.unlinkSync(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/**
 * Removes an entry of any type without following or opening it: unlink(2)
 * (a symlink goes, never its target; a FIFO is never opened), or rmdir(2) for
 * an empty directory. A non-empty directory is left alone (`kept`).
 */
export function removeAnyEntry(path: string): Removal {
  try {
    fs.unlinkSync(path);
    return 'removed';
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 'absent';
    // unlink(2) of a directory: EISDIR on Linux, EPERM elsewhere.
    if (!isErrno(err, 'EISDIR') && !isErrno(err, 'EPERM')) throw err;
    try {
      fs.rmdirSync(path);
      return 'removed';
    } catch (dirErr) {
      if (isErrno(dirErr, 'ENOENT')) return 'absent';
      if (isErrno(dirErr, 'ENOTEMPTY') || isErrno(dirErr, 'EEXIST')) return 'kept';
      throw isErrno(dirErr, 'ENOTDIR') ? err : dirErr; // not a directory: the unlink's EPERM was the real answer
    }
  }
}

/**
 * rmdir(2) only: `removed`, `absent` (ENOENT, or ENOTDIR: no longer a
 * directory, so not ours to remove), or `kept` (not empty). Unlike
 * removeAnyEntry it can never remove a file someone put there meanwhile.
 */
export function removeDirectoryOnly(path: string): Removal {
  try {
    fs.rmdirSync(path);
    return 'removed';
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return 'absent';
    if (isErrno(err, 'ENOTEMPTY') || isErrno(err, 'EEXIST')) return 'kept';
    throw err;
  }
}

/** The target of a symbolic link; undefined when there is none (ENOENT). */
export function readLinkIfAny(path: string): string | undefined {
  try {
    return fs.readlinkSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export function makeDirectory(path: string, mode: number, recursive: boolean): void {
  try {
    fs.mkdirSync(path, { mode, recursive });
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err; // another process made it first
  }
}

/**
 * Creates one directory with exactly `mode` (chmod after mkdir, so neither the
 * umask nor mkdir's handling of the sticky and setgid bits changes it).
 * False when it already exists (EEXIST: another process made it first).
 */
export function makeDirectoryWithMode(path: string, mode: number): boolean {
  try {
    fs.mkdirSync(path, { mode });
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
  fs.chmodSync(path, mode);
  return true;
}

export function isDirectory(path: string): boolean {
  try {
    return fs.statSync(path).isDirectory();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
    throw err;
  }
}

/** The path with every symlink resolved (throws if it does not exist). */
export function resolveRealPath(path: string): string {
  return fs.realpathSync(path);
}

/** Where a symbolic link points, as written in it. */
export function readSymlink(path: string): string {
  return fs.readlinkSync(path);
}

/** `major:minor` of the file system that holds `path` (Linux's dev_t encoding). */
export function deviceNumber(path: string): string {
  const dev = fs.statSync(path, { bigint: true }).dev;
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** The kernel's name of block device `major:minor` (`vda1`, `dm-0`), from /sys/dev/block; undefined if it is not one. */
export function blockDeviceName(majorMinor: string): string | undefined {
  try {
    return fs.readlinkSync(`/sys/dev/block/${majorMinor}`).split('/').pop() || undefined;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
