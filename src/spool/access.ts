/**
 * Looks up who owns, and who may write, each directory on the way to a spool
 * and each of its state directories, for the pure rules in permissions.ts.
 * Read-only: it stats, never creates. The path is walked twice, as given and
 * with its symlinks resolved, so a symlink on the way is judged by who could
 * replace it as well as where it leads.
 */
import { resolve, sep } from 'node:path';
import { SpoolError } from '../errors.js';
import { redirections, type DirectoryAccess } from '../permissions.js';
import { SPOOL_DIRS, type SpoolPaths } from './layout.js';
import * as sfs from './fs.js';

/** A directory and one of its entries (a directory, or a symlink on the way to one). */
export type EntryPair = readonly [parent: DirectoryAccess, child: DirectoryAccess];

/** Owner and mode of the entry at `path` (lstat; stat with `follow`); undefined when it is missing. */
function access(path: string, follow: boolean): DirectoryAccess | undefined {
  const entry = sfs.identifyEntry(path, follow);
  if (entry.type === 'missing' || entry.mode === undefined || entry.uid === undefined) return undefined;
  return { path, mode: entry.mode, uid: entry.uid };
}

/** Each directory from `/` down to `path` paired with its entry on the way (absolute `path`). */
function pathPairs(path: string): EntryPair[] {
  const pairs: EntryPair[] = [];
  let parentPath: string = sep;
  for (const part of path.split(sep).filter((p) => p !== '')) {
    const childPath = parentPath === sep ? `${sep}${part}` : `${parentPath}${sep}${part}`;
    const parent = access(parentPath, true);
    const child = access(childPath, false);
    if (parent !== undefined && child !== undefined) pairs.push([parent, child]);
    parentPath = childPath;
  }
  return pairs;
}

/**
 * The pairs that decide whether anyone could redirect the spool: every
 * directory on the way to it (as given, and resolved) with its next entry, and
 * the spool directory with each state directory.
 */
export function spoolEntryPairs(paths: SpoolPaths): EntryPair[] {
  const given = resolve(paths.root);
  const real = sfs.resolveRealPath(paths.root);
  const pairs = pathPairs(given);
  if (real !== given) pairs.push(...pathPairs(real));
  const root = access(paths.root, true);
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

/**
 * Refuses a spool in which anyone but the server's user and root could rename
 * or replace a directory on the way to the spool or one of its state
 * directories: a state directory swapped for a symlink between two of the
 * server's checks would carry requests or results out of the spool.
 */
export function refuseRedirectableSpool(paths: SpoolPaths, serverUid: number): void {
  const reasons = redirections(spoolEntryPairs(paths), serverUid);
  if (reasons.length === 0) return;
  throw new SpoolError(
    `refusing spool ${paths.root}: other users could swap its directories for symlinks and so redirect what the server writes out of it ` +
      `(${reasons.join('; ')}). Make each directory on the way owned by this user or root and writable by no one else, ` +
      'or give a shared one the sticky bit and let this user own what is in it (docs/operations.md)',
  );
}
