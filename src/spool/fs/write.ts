/**
 * Writing and moving entries: files are written whole under a temp name and
 * published by link(2), which fails with EEXIST rather than replace a name;
 * created with O_EXCL|O_NOFOLLOW; moved by rename(2) between state directories.
 * Part of the one door to the file system for spool work (spool/fs.ts).
 */
import * as fs from 'node:fs';
import { isErrno } from '../../errors.js';
import { entryExists, removeAnyEntry, removeEntry } from './entries.js';

const { O_RDONLY, O_NOFOLLOW, O_EXCL, O_WRONLY, O_CREAT } = fs.constants;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

export interface WriteOptions {
  /** File mode (the umask still applies). @default 0o644 */
  mode?: number;
}

let tempCounter = 0;

/**
 * Writes bytes to a new, uniquely named file in `tmpDir` and returns its path.
 * The name is `<tag>.<pid>.<counter>`: unique among live processes; a name left
 * by a dead process with the same pid is skipped (EEXIST) and housekeeping removes it.
 */
export function writeTemp(tmpDir: string, tag: string, bytes: Uint8Array, options: WriteOptions = {}): string {
  let path: string;
  let fd: number;
  for (;;) {
    path = `${tmpDir}/${tag}.${process.pid}.${++tempCounter}`;
    try {
      fd = fs.openSync(path, CREATE_FLAGS, options.mode ?? 0o644);
      break;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err; // a dead namesake's leftover: take the next number
    }
  }
  writeWholeAndClose(fd, path, bytes);
  return path;
}

/** Writes bytes to a new file at `path` (O_EXCL: fails with EEXIST rather than replace anything). */
export function writeNew(path: string, bytes: Uint8Array, mode = 0o644): void {
  writeWholeAndClose(fs.openSync(path, CREATE_FLAGS, mode), path, bytes);
}

/** Writes all of `bytes` to the new file `fd` (at `path`) and closes it; a failed write removes the file, so no partial file is left. */
function writeWholeAndClose(fd: number, path: string, bytes: Uint8Array): void {
  try {
    let offset = 0;
    while (offset < bytes.length) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset);
  } catch (err) {
    fs.closeSync(fd);
    removeEntry(path);
    throw err;
  }
  fs.closeSync(fd);
}

/**
 * Like writeNew, but an entry already at `path` (not a directory) is removed
 * and the write tried once more. The usual case, nothing there, costs one
 * create and no exception; removing first would cost a failing unlink and
 * the ENOENT error Node builds for it on every call.
 */
export function writeNewReplacing(path: string, bytes: Uint8Array, mode = 0o644): void {
  try {
    writeNew(path, bytes, mode);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
    removeEntry(path);
    writeNew(path, bytes, mode);
  }
}

/**
 * Gives the complete file at `tempPath` the name `dest`, only if `dest` is free.
 * Returns false when the name is taken (EEXIST: an id collision or a planted
 * entry); the temp file is removed either way.
 */
export function publish(tempPath: string, dest: string): boolean {
  try {
    return linkExclusive(tempPath, dest);
  } finally {
    removeEntry(tempPath);
  }
}

/**
 * Gives an existing file a second name, only if that name is free; false when
 * it is taken (EEXIST). The caller removes the first name.
 */
export function linkExclusive(existing: string, dest: string): boolean {
  try {
    fs.linkSync(existing, dest);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
}

/** Creates an empty file exclusively; false if the name already exists (EEXIST). */
export function createEmptyExclusive(path: string, mode = 0o644): boolean {
  try {
    fs.closeSync(fs.openSync(path, CREATE_FLAGS, mode));
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
}

/**
 * Opens a new file for writing at `path`, in place of whatever was there:
 * a leftover file or symlink is unlinked (never written through), an empty
 * directory removed; then the file is created exclusively (O_EXCL|O_NOFOLLOW).
 * Throws EEXIST when a non-empty directory (or a racing creator) holds the
 * name, and any other fault (EMFILE, EACCES). Returns the file descriptor.
 */
export function openNewReplacing(path: string, mode = 0o644): number {
  removeAnyEntry(path);
  return fs.openSync(path, CREATE_FLAGS, mode);
}

/** Closes a file descriptor from openNewReplacing that will not be written. */
export function closeDescriptor(fd: number): void {
  fs.closeSync(fd);
}

/** A write stream on a file descriptor that openNewReplacing opened at `path`; it closes the descriptor when it ends. */
export function descriptorWriteStream(fd: number, path: string): fs.WriteStream {
  return fs.createWriteStream(path, { fd });
}

/**
 * Renames an entry between state directories. Returns false when the source is
 * gone (ENOENT: already moved or removed by its owner). Callers guarantee the
 * destination name is free: only the server creates names there. ENOENT while
 * the source is still there means the destination directory is missing: that
 * is a fault, thrown, not a race.
 */
export function moveEntry(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT') && !entryExists(from)) return false;
    throw err;
  }
}

/**
 * Puts the complete file at `tempPath` in place of whatever file is at `dest`
 * (rename(2), atomic: a reader opens the old file or the new one). Only for a
 * file one process alone writes (the server's `server.state`); requests and
 * results never replace anything (see publish). The temp file is removed if
 * the rename fails (EISDIR: a directory planted there).
 */
export function replaceEntry(tempPath: string, dest: string): void {
  try {
    fs.renameSync(tempPath, dest);
  } catch (err) {
    removeEntry(tempPath);
    throw err;
  }
}

/**
 * Renames the entry at `path` into `tmpDir` under a fresh name, so it can be
 * looked at and removed by identity rather than by a name someone may reuse
 * meanwhile. Returns the new path, or undefined when it was already gone (ENOENT).
 */
export function moveAside(path: string, tmpDir: string, tag: string): string | undefined {
  const aside = `${tmpDir}/${tag}.${process.pid}.${++tempCounter}`;
  return moveEntry(path, aside) ? aside : undefined;
}

/**
 * fsyncs a file, asynchronously: several of these in flight at once let the
 * file system commit them together (group commit), where sync calls would each
 * wait for a commit of their own.
 */
export async function syncFileAsync(path: string): Promise<void> {
  // fs.promises, not an import of node:fs/promises: loaded only by durable mode, not by every `wq` call.
  const handle = await fs.promises.open(path, O_RDONLY | O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs a directory asynchronously (see syncFileAsync). */
export async function syncDirectoryAsync(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
