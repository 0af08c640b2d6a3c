/**
 * The only module that touches the file system for spool work (tests mock it to
 * inject faults). Files are published by link(2), which fails with EEXIST rather
 * than replace a name; entries are checked with lstat and opened with
 * O_NOFOLLOW|O_NONBLOCK, so a symlink, FIFO, socket or device planted in the
 * spool is refused instead of followed, blocked on or opened; entries of any
 * type are removed without being followed or descended into.
 * Every helper names the race it tolerates; anything else is thrown.
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { isErrno, ProtocolError } from '../errors.js';

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
const READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

export function makeDirectory(path: string, mode: number, recursive: boolean): void {
  try {
    fs.mkdirSync(path, { mode, recursive });
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err; // another process made it first
  }
}

export function isDirectory(path: string): boolean {
  try {
    return fs.statSync(path).isDirectory();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
    throw err;
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
  try {
    let offset = 0;
    while (offset < bytes.length) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset);
  } catch (err) {
    fs.closeSync(fd);
    removeEntry(path);
    throw err;
  }
  fs.closeSync(fd);
  return path;
}

/** Writes bytes to a new file at `path` (O_EXCL: fails with EEXIST rather than replace anything). */
export function writeNew(path: string, bytes: Uint8Array, mode = 0o644): void {
  const fd = fs.openSync(path, CREATE_FLAGS, mode);
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

/** Describes an entry that is not a regular file, for error messages: "a FIFO", "a symbolic link" … */
export function describeEntry(stat: fs.Stats): string {
  if (stat.isSymbolicLink()) return 'a symbolic link';
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  if (stat.isBlockDevice() || stat.isCharacterDevice()) return 'a device';
  return 'not a regular file';
}

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
 * What removeAnyEntry did: `removed`; `absent` (it was already gone, ENOENT);
 * `kept`: a non-empty directory, which is never descended into.
 */
export type Removal = 'removed' | 'absent' | 'kept';

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

/** What is at a path, as far as the spool's layout cares. */
export interface EntryIdentity {
  type: 'directory' | 'symlink' | 'other' | 'missing';
  dev?: number;
  ino?: number;
  /** Permission bits, including setgid and sticky (`mode & 0o7777`). */
  mode?: number;
  /** Its owner. */
  uid?: number;
  /** Its group. */
  gid?: number;
  /** How many names it has (hard links). */
  nlink?: number;
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

/** Watches a directory for names appearing or disappearing (fs.watch: fast, but may drop events). */
export function watchDirectory(dir: string, onName: (name: string | null) => void, onError: (err: Error) => void): fs.FSWatcher {
  const watcher = fs.watch(dir, { persistent: true }, (_event, name) => onName(name === null ? null : String(name)));
  watcher.on('error', onError);
  return watcher;
}

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

/**
 * Renames the entry at `path` into `tmpDir` under a fresh name, so it can be
 * looked at and removed by identity rather than by a name someone may reuse
 * meanwhile. Returns the new path, or undefined when it was already gone (ENOENT).
 */
export function moveAside(path: string, tmpDir: string, tag: string): string | undefined {
  const aside = `${tmpDir}/${tag}.${process.pid}.${++tempCounter}`;
  try {
    fs.renameSync(path, aside);
    return aside;
  } catch (err) {
    if (isErrno(err, 'ENOENT') && !entryExists(path)) return undefined;
    throw err;
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

/** The target of a symbolic link; undefined when there is none (ENOENT). */
export function readLinkIfAny(path: string): string | undefined {
  try {
    return fs.readlinkSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
