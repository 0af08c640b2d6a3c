/**
 * Looks up who owns, and who may write, each directory on the way to a spool
 * and each of its state directories, for the pure rules in permissions.ts.
 * Read-only: it stats and reads links, never creates. The path is resolved one
 * component at a time, as the kernel does, so every directory and every
 * symlink on the way (a link's own target included) is judged by who could
 * replace it.
 */
import { isAbsolute, resolve, sep } from 'node:path';
import { isErrno, SpoolError } from '../errors.js';
import { redirections, type DirectoryAccess } from './permissions.js';
import { privateGroups } from '../private-groups.js';
import { openSpool, spoolPaths, SPOOL_DIRS, type SpoolPaths } from './layout.js';
import * as sfs from './fs.js';

/** A directory and one of its entries (a directory, or a symlink on the way to one). */
export type EntryPair = readonly [parent: DirectoryAccess, child: DirectoryAccess];

/** Symlinks followed at most while resolving one path (Linux's limit, after which it fails with ELOOP). */
export const MAX_SYMLINK_HOPS = 40;

/** Who the server runs as, for the rules in permissions.ts. */
export interface ServerIdentity {
  uid: number;
  /** Groups no one but this user and root is in (see private-groups.ts): their write bit lets no one else in. */
  privateGids: readonly number[];
}

/** Owner, group and mode of the entry at `path` (lstat; stat with `follow`); undefined when it is missing. */
function access(path: string, follow: boolean): (DirectoryAccess & { type: sfs.EntryIdentity['type'] }) | undefined {
  const entry = sfs.identifyEntry(path, follow);
  if (entry.type === 'missing' || entry.mode === undefined || entry.uid === undefined) return undefined;
  return { path, mode: entry.mode, uid: entry.uid, gid: entry.gid, type: entry.type };
}

const components = (path: string): string[] => path.split(sep).filter((p) => p !== '' && p !== '.');

/**
 * Each directory met while resolving `path` (absolute) paired with its entry
 * on the way, following each symlink into its target as the kernel would;
 * `complete` is false when the walk stopped at a missing entry (what is left
 * does not exist yet).
 */
export function pathPairs(path: string): { pairs: EntryPair[]; complete: boolean } {
  const pairs: EntryPair[] = [];
  const todo = components(path);
  let current: string = sep; // always a real directory path: no symlinks in it
  let hops = 0;
  for (let part = todo.shift(); part !== undefined; part = todo.shift()) {
    if (part === '..') {
      current = resolve(current, '..');
      continue;
    }
    const next = current === sep ? `${sep}${part}` : `${current}${sep}${part}`;
    const parent = access(current, false);
    const child = access(next, false);
    if (parent === undefined || child === undefined) return { pairs, complete: false };
    pairs.push([parent, child]);
    if (child.type === 'symlink') {
      if (++hops > MAX_SYMLINK_HOPS) throw new SpoolError(`${path}: more than ${MAX_SYMLINK_HOPS} symbolic links on the way (a loop?)`);
      const target = sfs.readSymlink(next);
      todo.unshift(...components(target));
      if (isAbsolute(target)) current = sep;
      continue;
    }
    if (child.type !== 'directory' && todo.length > 0) return { pairs, complete: false };
    current = next;
  }
  return { pairs, complete: true };
}

/**
 * The pairs that decide whether anyone could redirect the spool: every
 * directory met on the way to it with its next entry, and the spool
 * directory with each state directory (those that exist).
 */
export function spoolEntryPairs(paths: SpoolPaths): EntryPair[] {
  const { pairs, complete } = pathPairs(resolve(paths.root));
  const root = complete ? access(paths.root, true) : undefined;
  if (root === undefined) return pairs;
  for (const dir of SPOOL_DIRS) {
    const child = access(paths.dirs[dir], false);
    if (child !== undefined) pairs.push([root, child]);
  }
  return pairs;
}

/** The spool directory and each of its state directories (the spool reached through a symlink, if it is one). */
export function spoolDirectories(paths: SpoolPaths): DirectoryAccess[] {
  return [access(paths.root, true), ...SPOOL_DIRS.map((dir) => access(paths.dirs[dir], false))].filter((d) => d !== undefined);
}

/** Reads a system account file; undefined when it cannot be read (then no group counts as private). */
function readAccountFile(path: string): string | undefined {
  try {
    return sfs.readSmallTextFile(path);
  } catch (err) {
    if (isErrno(err, 'EACCES') || isErrno(err, 'EPERM')) return undefined; // locked down: be conservative
    throw err;
  }
}

/** The identity of this process, with its private groups from /etc/passwd and /etc/group. */
export function serverIdentity(): ServerIdentity {
  const uid = process.getuid?.() ?? 0;
  return { uid, privateGids: privateGroups(uid, readAccountFile('/etc/passwd'), readAccountFile('/etc/group')) };
}

/**
 * Refuses a spool in which anyone but the server's user and root could rename
 * or replace a directory on the way to the spool or one of its state
 * directories: a state directory swapped for a symlink between two of the
 * server's checks would carry requests or results out of the spool.
 */
export function refuseRedirectableSpool(paths: SpoolPaths, who: ServerIdentity): void {
  const reasons = redirections(spoolEntryPairs(paths), who.uid, who.privateGids);
  if (reasons.length === 0) return;
  throw new SpoolError(
    `refusing spool ${paths.root}: other users could swap its directories for symlinks and so redirect what the server writes out of it ` +
      `(${reasons.join('; ')}). Make each directory on the way owned by this user or root and writable by no one else, ` +
      'or give a shared one the sticky bit and let this user own what is in it (docs/operations.md)',
  );
}

/**
 * openSpool for a server: refuses a spool others could redirect before
 * creating anything in it (the part of the path that exists is checked first,
 * so nothing is written through a directory someone else controls), and again
 * once its missing parts exist.
 * @example
 * const paths = openServedSpool('/var/spool/wq', serverIdentity());
 */
export function openServedSpool(root: string, who: ServerIdentity): SpoolPaths {
  refuseRedirectableSpool(spoolPaths(root), who);
  const paths = openSpool(root);
  refuseRedirectableSpool(paths, who);
  return paths;
}
