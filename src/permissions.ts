/**
 * Who may do what in a spool shared by several users, decided from file
 * ownership and modes (plain data in, verdicts out; the callers stat the files).
 */

/** Mode bits of a directory and its owner, as lstat reports them. */
export interface DirectoryAccess {
  path: string;
  mode: number;
  uid: number;
}

/**
 * Directories through which someone other than the server's user could put a
 * request in front of a command server: writable by group or others, or owned
 * by another user. Empty when only the server's user can.
 */
export function foreignWritable(dirs: readonly DirectoryAccess[], serverUid: number): string[] {
  return dirs.filter((d) => (d.mode & 0o022) !== 0 || (d.uid !== serverUid && serverUid !== 0)).map((d) => d.path);
}

/** Who may abort whose request. */
export type AbortPolicy = 'owner' | 'anyone';

/**
 * Whether the user who filed an abort may abort a request owned by
 * `ownerUid`: its owner, the server's own user and root may; anyone else only
 * under the 'anyone' policy (a group that trusts its members).
 */
export function mayAbort(abortUid: number, ownerUid: number | undefined, serverUid: number, policy: AbortPolicy): boolean {
  if (policy === 'anyone' || ownerUid === undefined) return true;
  return abortUid === ownerUid || abortUid === serverUid || abortUid === 0;
}
