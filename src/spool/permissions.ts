/**
 * Who may do what in a spool shared by several users, decided from file
 * ownership and modes (plain data in, verdicts out; spool/access.ts stats the
 * files). The server's user and root are the trusted owners: nobody else may
 * own, or be able to rename, anything on the way to the spool's directories.
 */

/** Mode bits of a directory (or a symlink on the way to one), its owner and group, as lstat reports them. */
export interface DirectoryAccess {
  path: string;
  mode: number;
  uid: number;
  /** Its group; unknown (undefined) counts as a group with other members. */
  gid?: number;
}

const GROUP_WRITABLE = 0o020;
const WORLD_WRITABLE = 0o002;
const STICKY = 0o1000;

/**
 * Who else may write `dir`, by its mode bits: 'everyone' (the other write
 * bit), 'its group' (the group write bit, unless the group is one of
 * `privateGids`, groups no one but the server's user and root is in), or
 * undefined when no one but its owner may.
 */
export function otherWriters(dir: DirectoryAccess, privateGids: readonly number[] = []): 'everyone' | 'its group' | undefined {
  if ((dir.mode & WORLD_WRITABLE) !== 0) return 'everyone';
  if ((dir.mode & GROUP_WRITABLE) !== 0 && (dir.gid === undefined || !privateGids.includes(dir.gid))) return 'its group';
  return undefined;
}

/** The chmod that takes the write bits of others away from `dir`. */
function chmodHint(dir: DirectoryAccess, privateGids: readonly number[]): string {
  const group = otherWriters({ ...dir, mode: dir.mode & ~WORLD_WRITABLE }, privateGids) !== undefined;
  const world = (dir.mode & WORLD_WRITABLE) !== 0;
  return `chmod ${group && world ? 'go-w' : world ? 'o-w' : 'g-w'} ${dir.path}`;
}

/** Says who may write `dir`: "everyone" or "its group, gid N, …". */
function writersText(dir: DirectoryAccess, who: 'everyone' | 'its group'): string {
  return who === 'everyone' ? 'everyone' : `its group, gid ${dir.gid ?? '?'}, which has members other than the server's user`;
}

/** Whether files owned by `uid` are under the control of the server's user (or of root, who controls everything). */
export function trustedOwner(uid: number, serverUid: number): boolean {
  return uid === serverUid || uid === 0;
}

/**
 * Why someone other than the server's user and root could rename, remove or
 * replace `child`, an entry of the directory `parent` (and so redirect what the
 * server writes through it); undefined when they cannot. They can when they own
 * `parent`, or may write it and it lacks the sticky bit, or it has the sticky
 * bit and they own `child` (with the sticky bit only an entry's owner, the
 * directory's owner and root may rename an entry).
 */
export function redirectableBy(parent: DirectoryAccess, child: DirectoryAccess, serverUid: number, privateGids: readonly number[] = []): string | undefined {
  if (!trustedOwner(parent.uid, serverUid)) return `${parent.path} is owned by uid ${parent.uid}, who could rename ${child.path}`;
  const writers = otherWriters(parent, privateGids);
  if (writers === undefined) return undefined;
  if ((parent.mode & STICKY) === 0) {
    return `${parent.path} is writable by other users and has no sticky bit, so they could rename ${child.path} (writable by ${writersText(parent, writers)}; to fix: ${chmodHint(parent, privateGids)})`;
  }
  if (!trustedOwner(child.uid, serverUid)) return `${child.path} is owned by uid ${child.uid} in the shared directory ${parent.path}, so its owner could rename it`;
  return undefined;
}

/**
 * Every reason why others could redirect the spool (see redirectableBy), over
 * pairs of a directory and one of its entries on the way to the spool and
 * from the spool to its state directories. Empty when only the server's user
 * and root can.
 */
export function redirections(pairs: readonly (readonly [DirectoryAccess, DirectoryAccess])[], serverUid: number, privateGids: readonly number[] = []): string[] {
  return pairs.flatMap(([parent, child]) => redirectableBy(parent, child, serverUid, privateGids) ?? []);
}

/**
 * Directories through which someone other than the server's user (and root)
 * could put a request, an abort or an output file in front of a command server:
 * writable by group (one with other members) or others (sticky or not), or owned by another user; one
 * line for each, saying which. Empty when only the server's user and root can.
 */
export function foreignWritable(dirs: readonly DirectoryAccess[], serverUid: number, privateGids: readonly number[] = []): string[] {
  return dirs.flatMap((d) => {
    if (!trustedOwner(d.uid, serverUid)) return [`${d.path} is owned by uid ${d.uid}`];
    if (otherWriters(d, privateGids) !== undefined) return [`${d.path} is writable by ${otherWriters(d, privateGids)}`];
    return [];
  });
}

/**
 * Whether a request whose file is owned by `ownerUid` may run: always when
 * `owners` is undefined (anyone who can write requested/), else only when the
 * owner is listed (a root command server lists root alone: it would run
 * anyone else's command as root).
 */
export function mayRunRequest(ownerUid: number, owners: readonly number[] | undefined): boolean {
  return owners === undefined || owners.includes(ownerUid);
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
