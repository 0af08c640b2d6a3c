/**
 * Reading entries: opened with O_NOFOLLOW|O_NONBLOCK and checked with fstat, so
 * a symlink, FIFO, socket or device planted in the spool is refused instead of
 * followed or blocked on; reads are bounded by a size limit.
 * Part of the one door to the file system for spool work (spool/fs.ts).
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { isErrno, ProtocolError } from '../../errors.js';
import { describeEntry, entryStat } from './entries.js';

const { O_NONBLOCK, O_RDONLY, O_NOFOLLOW } = fs.constants;
const READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;

/** Whether the server may look up names in `dir` (EACCES on an entry then means the entry itself is unreadable). */
function isSearchable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.X_OK);
    return true;
  } catch {
    return false; // EACCES, or anything else that stops us from telling: the directory is the problem
  }
}

export interface ReadEntryOptions {
  /**
   * The entry is in a directory only the server (or root) can add to, and is
   * expected to be there: open it at once, without the lstat that keeps a
   * reader from opening a device. A FIFO still cannot block the open
   * (O_NONBLOCK) and the fstat still refuses anything but a regular file; a
   * missing entry costs an exception instead of an lstat. @default false
   */
  trustedDirectory?: boolean;
}

/**
 * Reads a whole spool entry without following a symlink, blocking on a FIFO or
 * opening a device (lstat first; the fstat after opening closes the race).
 * Returns undefined when it does not exist (ENOENT); throws ProtocolError when
 * it is not a regular file, is larger than `maxBytes`, or is itself unreadable
 * (EACCES in a directory the server can search: the file's own mode).
 */
export function readEntry(path: string, maxBytes: number, options: ReadEntryOptions = {}): Buffer | undefined {
  return readOwnedEntry(path, maxBytes, options)?.bytes;
}

/**
 * readEntry, with the owner of the file it read and its number of names
 * (from the fstat of the descriptor it read, so they are those of these very
 * bytes: a second name means someone may have linked a file they do not own).
 */
export function readOwnedEntry(path: string, maxBytes: number, options: ReadEntryOptions = {}): { bytes: Buffer; uid: number; nlink: number; dev: number; ino: number } | undefined {
  if (options.trustedDirectory !== true) {
    const before = entryStat(path);
    if (before === undefined) return undefined;
    if (!before.isFile()) throw new ProtocolError(`${path} is ${describeEntry(before)}; spool entries must be regular files`);
    if (before.size > maxBytes) throw new ProtocolError(`${path} is ${before.size} bytes; the limit is ${maxBytes}`);
  }
  let fd: number;
  try {
    fd = fs.openSync(path, READ_FLAGS);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    if (isErrno(err, 'ELOOP')) throw new ProtocolError(`${path} is a symbolic link; spool entries must be regular files`);
    if (isErrno(err, 'ENXIO')) throw new ProtocolError(`${path} is a socket; spool entries must be regular files`);
    if ((isErrno(err, 'EACCES') || isErrno(err, 'EPERM')) && isSearchable(dirname(path))) {
      throw new ProtocolError(`${path} cannot be read by the server: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new ProtocolError(`${path} is ${describeEntry(stat)}; spool entries must be regular files`);
    if (stat.size > maxBytes) throw new ProtocolError(`${path} is ${stat.size} bytes; the limit is ${maxBytes}`);
    const buffer = Buffer.allocUnsafe(stat.size);
    let offset = 0;
    while (offset < stat.size) {
      const n = fs.readSync(fd, buffer, offset, stat.size - offset, offset);
      if (n === 0) break; // shrank under us; decoding the short buffer will fail loudly
      offset += n;
    }
    return { bytes: offset === stat.size ? buffer : buffer.subarray(0, offset), uid: stat.uid, nlink: stat.nlink, dev: stat.dev, ino: stat.ino };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a small text file; undefined if it does not exist. */
export function readSmallTextFile(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** Fills `buffer` from the start of the file at `path` (a device such as /dev/urandom: no checks on what it is). */
export function readDeviceInto(path: string, buffer: Buffer): void {
  const fd = fs.openSync(path, 'r');
  try {
    let offset = 0;
    while (offset < buffer.length) offset += fs.readSync(fd, buffer, offset, buffer.length - offset, null);
  } finally {
    fs.closeSync(fd);
  }
}

/** Watches a directory for names appearing or disappearing (fs.watch: fast, but may drop events). */
export function watchDirectory(dir: string, onName: (name: string | null) => void, onError: (err: Error) => void): fs.FSWatcher {
  const watcher = fs.watch(dir, { persistent: true }, (_event, name) => onName(name === null ? null : String(name)));
  watcher.on('error', onError);
  return watcher;
}

/**
 * Reads a file that is still being written (a request's output log) from the
 * offset `from(stat)` gives, chunk by chunk to `onChunk`, until its current
 * end; opened without following a symlink or blocking on a FIFO. False when
 * there is no file yet (ENOENT: not created yet, or removed with its result)
 * or something that is not a regular file; true once it was read.
 */
export function readGrowingFile(path: string, from: (stat: fs.Stats) => number, onChunk: (chunk: Buffer) => void, chunkBytes = 64 * 1024): boolean {
  let fd: number;
  try {
    fd = fs.openSync(path, READ_FLAGS);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return false;
    let offset = from(stat);
    const buffer = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, chunkBytes, offset);
      if (n === 0) return true;
      offset += n;
      onChunk(Buffer.from(buffer.subarray(0, n)));
    }
  } finally {
    fs.closeSync(fd);
  }
}

