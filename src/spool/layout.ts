/**
 * The spool's shape: one directory per state plus `tmp/`, a `format` marker and
 * the server lock. Anyone (server or client) may create a missing part; nobody
 * ever deletes the spool. A spool whose format marker names another protocol
 * version, or is not a regular file, is refused, never rewritten; so is one
 * whose state directories are not real directories (a symlink could lead out
 * of the spool). The spool directory itself may be reached through a symlink.
 */
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { ProtocolError, SpoolError } from '../errors.js';
import * as sfs from './fs.js';
import { PROTOCOL_VERSION, REQUEST_STATES } from './types.js';
import { asSpoolError } from './spool-fault.js';

export { PROTOCOL_VERSION, REQUEST_STATES, type RequestState } from './types.js';

/** Every directory of a spool, including the non-state ones. */
export const SPOOL_DIRS = [...REQUEST_STATES, 'aborting', 'tmp', 'logs'] as const;
export type SpoolDir = (typeof SPOOL_DIRS)[number];

export const FORMAT_FILE = 'format';
export const LOCK_FILE = 'server.lock';
/** What the serving process says holds its queue (docs/protocol.md, *Server state*). */
export const STATE_FILE = 'server.state';
const FORMAT_PREFIX = 'spool-workqueue protocol ';
/** Longest format file read: ours is 27 bytes; anything much larger is not ours. */
const MAX_FORMAT_BYTES = 4096;

export interface SpoolPaths {
  readonly root: string;
  readonly formatFile: string;
  readonly lockFile: string;
  readonly stateFile: string;
  readonly dirs: Readonly<Record<SpoolDir, string>>;
}

export function spoolPaths(root: string): SpoolPaths {
  const dirs = Object.fromEntries(SPOOL_DIRS.map((d) => [d, join(root, d)])) as Record<SpoolDir, string>;
  return { root, formatFile: join(root, FORMAT_FILE), lockFile: join(root, LOCK_FILE), stateFile: join(root, STATE_FILE), dirs };
}

/** Path of a request (or abort marker) in a given directory. The id must already be validated (no slashes). */
export function entryPath(paths: SpoolPaths, dir: SpoolDir, id: string): string {
  return `${paths.dirs[dir]}/${id}`;
}

/** Suffix of a result written but not yet published: `running/<id>.result` (docs/protocol.md, *Publishing a result*). */
export const STAGED_SUFFIX = '.result';

/** Where a result waits between its write and its publication. */
export function stagedResultPath(paths: SpoolPaths, id: string): string {
  return `${entryPath(paths, 'running', id)}${STAGED_SUFFIX}`;
}

/** Suffix of a running task's process record: `running/<id>.proc` (docs/protocol.md, *Task process records*). */
export const PROCESS_SUFFIX = '.proc';

/** Where the server records the process group of a request's running task. */
export function processRecordPath(paths: SpoolPaths, id: string): string {
  return `${entryPath(paths, 'running', id)}${PROCESS_SUFFIX}`;
}

/** Files a command task leaves in logs/ while it runs: its output as it is written, and its pid. */
export const LOG_SUFFIXES = ['stdout', 'stderr', 'pid'] as const;
export type LogSuffix = (typeof LOG_SUFFIXES)[number];

/** Path of a request's log file: `logs/<id>.<suffix>`. */
export function logPath(paths: SpoolPaths, id: string, suffix: LogSuffix): string {
  return logFilePath(paths.dirs.logs, id, suffix);
}

/** logPath for a task manager, which knows the spool's log directory only. */
export function logFilePath(logDir: string, id: string, suffix: LogSuffix): string {
  return `${logDir}/${id}.${suffix}`;
}

/**
 * Removes every log file of a request (they go with its result). Something
 * planted where a log goes is removed the same way if it can be without
 * descending into it (an empty directory); a non-empty directory is left for
 * housekeeping to report, so claiming a result never fails on it.
 */
export function removeLogs(paths: SpoolPaths, id: string): void {
  for (const suffix of LOG_SUFFIXES) sfs.removeAnyEntry(logPath(paths, id, suffix));
}

/**
 * Directories wq creates are writable by their creator only, whatever the
 * umask: a spool others may write is set up on purpose (docs/operations.md).
 */
export const DEFAULT_DIR_MODE = 0o755;

export interface OpenSpoolOptions {
  /** Create the spool and its directories if missing. @default true */
  create?: boolean;
  /** Mode for directories this call creates (the umask still applies). @default 0o755 */
  dirMode?: number;
}

/**
 * Makes sure the spool exists with every directory and a format marker of our
 * version; creates what is missing. Throws SpoolError for a foreign or newer
 * spool, and for one that cannot be used (not a directory, permissions, a
 * read-only file system), naming the spool and the cause.
 */
export function openSpool(root: string, options: OpenSpoolOptions = {}): SpoolPaths {
  try {
    return openSpoolAsIs(root, options);
  } catch (err) {
    throw asSpoolError(root, err);
  }
}

function openSpoolAsIs(root: string, options: OpenSpoolOptions): SpoolPaths {
  const paths = spoolPaths(root);
  const create = options.create ?? true;
  const dirMode = options.dirMode ?? DEFAULT_DIR_MODE;
  const found = sfs.identifyEntry(root, true).type;
  if (found === 'other') throw new SpoolError(`spool ${root} cannot be used: it is not a directory`);
  if (found === 'missing') {
    if (!create) throw new SpoolError(`spool ${root} does not exist`);
    sfs.makeDirectory(root, dirMode, true);
  }
  checkFormat(paths, create);
  for (const dir of SPOOL_DIRS) {
    let entry = sfs.identifyEntry(paths.dirs[dir]);
    if (create && entry.type === 'missing') {
      // Looked at first: a mkdir that fails with EEXIST costs an exception, on every `wq` call.
      sfs.makeDirectory(paths.dirs[dir], dirMode, false);
      entry = sfs.identifyEntry(paths.dirs[dir]);
    }
    if (entry.type === 'missing') throw new SpoolError(`spool ${root} is missing its ${dir}/ directory`);
    const problem = directoryProblem(entry);
    if (problem !== undefined) throw new SpoolError(`spool ${root}: its ${dir}/ ${problem}`);
  }
  return paths;
}

/** Why an entry cannot serve as a state directory; undefined when it can (a real directory). */
export function directoryProblem(entry: sfs.EntryIdentity): string | undefined {
  switch (entry.type) {
    case 'directory':
      return undefined;
    case 'missing':
      return 'directory is missing';
    case 'symlink':
      return 'is a symbolic link; wq never follows a symlink out of the spool (make it a real directory)';
    case 'other':
      return 'is not a directory';
  }
}

/** What the spool directory and each state directory are now (see protocol.ts: checkLayout). */
export interface LayoutObservation {
  root: sfs.EntryIdentity;
  dirs: Record<SpoolDir, sfs.EntryIdentity>;
}

/** Observes the layout: the spool directory (through a symlink, if it is reached by one) and each state directory (never through one). */
export function observeLayout(paths: SpoolPaths): LayoutObservation {
  const root = sfs.identifyEntry(paths.root, true);
  const dirs = Object.fromEntries(SPOOL_DIRS.map((d) => [d, sfs.identifyEntry(paths.dirs[d])])) as Record<SpoolDir, sfs.EntryIdentity>;
  return { root, dirs };
}

function checkFormat(paths: SpoolPaths, create: boolean): void {
  let bytes: Buffer | undefined;
  try {
    bytes = sfs.readEntry(paths.formatFile, MAX_FORMAT_BYTES);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    throw new SpoolError(`${paths.root} is not a usable wq spool: ${err.message}`, { cause: err });
  }
  const text = bytes?.toString('utf8');
  if (text === undefined) {
    if (!create) return;
    // Several processes may race here; each writes the same bytes atomically.
    // Loaded only here, once per spool's life, to keep every other command's start-up lean.
    const writeFileAtomic = createRequire(import.meta.url)('write-file-atomic') as typeof import('write-file-atomic');
    writeFileAtomic.sync(paths.formatFile, `${FORMAT_PREFIX}${PROTOCOL_VERSION}\n`, { mode: 0o644 });
    return;
  }
  const version = parseFormat(text);
  if (version === undefined) {
    throw new SpoolError(`${paths.root} is not a wq spool: its ${FORMAT_FILE} file does not start with "${FORMAT_PREFIX}"`);
  }
  if (version !== PROTOCOL_VERSION) {
    throw new SpoolError(
      `spool ${paths.root} uses protocol version ${version}; this wq speaks version ${PROTOCOL_VERSION} ` +
        '(drain the spool with the matching wq, or use a new spool; see docs/operations.md)',
    );
  }
}

/** Parses the format marker; undefined when it is not ours. */
export function parseFormat(text: string): number | undefined {
  if (!text.startsWith(FORMAT_PREFIX)) return undefined;
  const digits = text.slice(FORMAT_PREFIX.length).trim();
  if (!/^[1-9]\d{0,8}$/.test(digits)) return undefined;
  return Number(digits);
}
