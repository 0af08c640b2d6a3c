/**
 * Which file system a spool lives on, and what about it an operator should
 * hear at start-up. The logic is pure (text and names in, plain data out);
 * the reads of /proc and /sys are the `FileSystemSources`, which go through
 * ./fs.js, and tests pass their own.
 */
import { blockDeviceName, deviceNumber, readSmallTextFile, resolveRealPath } from './fs.js';

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  /** `major:minor` of the file system. */
  majorMinor: string;
  mountPoint: string;
  type: string;
  /** What was mounted, as the kernel reports it (`/dev/vda1`, `/dev/root`, `server:/export`, `tmpfs`). */
  source: string;
}

export interface FileSystemInfo {
  source: string;
  mountPoint: string;
  type: string;
  /** For ext4: whether it has a journal; undefined when not ext4 or not known. */
  journal: boolean | undefined;
}

/** Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`). */
function unescapeField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Parses /proc/self/mountinfo: `id parent major:minor root mount-point options
 * [optional fields...] - type source super-options`, in the order the mounts
 * were made.
 */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 3) continue;
    const [majorMinor, mountPoint, type, source] = [fields[2]!, fields[4]!, fields[dash + 1]!, fields[dash + 2]!];
    if (!/^\d+:\d+$/.test(majorMinor)) continue;
    entries.push({ majorMinor, mountPoint: unescapeField(mountPoint), type, source: unescapeField(source) });
  }
  return entries;
}

function holds(mountPoint: string, path: string): boolean {
  return mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
}

/**
 * The mount that holds `path` (absolute, without symlinks) on the file system
 * numbered `majorMinor`: of the entries for that file system whose mount point
 * holds the path, the last made; failing that, the last made that holds the
 * path, whatever its number (btrfs subvolumes report numbers of their own).
 */
export function mountOf(mounts: readonly MountEntry[], path: string, majorMinor: string | undefined): MountEntry | undefined {
  const holding = mounts.filter((m) => holds(m.mountPoint, path));
  return holding.findLast((m) => m.majorMinor === majorMinor) ?? holding.at(-1);
}

/** ext4 reports its journal thread in /sys/fs/ext4/<device>/journal_task (Linux 5.1+), `<none>` without one. */
export function hasJournal(journalTask: string | undefined): boolean | undefined {
  if (journalTask === undefined) return undefined;
  const text = journalTask.trim();
  if (text === '<none>') return false;
  return /^\d+$/.test(text) ? true : undefined;
}

/** File system types on which the server's inotify watches and the lock's host check do not hold. */
const NETWORK_TYPES = new Set(['nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', '9p', 'ceph', 'fuse.ceph-fuse', 'fuse.sshfs', 'fuse.glusterfs', 'lustre', 'afs', 'gpfs', 'beegfs']);

const NO_JOURNAL_CONSEQUENCES =
  'after a power loss or kernel crash a rename may be half done until fsck repairs it, so neither the default nor --durable mode keeps its power-loss promise, and creating files slows while requests are added and removed quickly (see "Which file system" in docs/operations.md)';

/** Whether other hosts may mount this file system too (so a lock naming another host may be alive there). */
export function isNetworkFileSystem(info: FileSystemInfo): boolean {
  return NETWORK_TYPES.has(info.type);
}

/** What an operator should be told about a spool on this file system (nothing for the usual ones). */
export function fileSystemWarnings(info: FileSystemInfo): string[] {
  const warnings: string[] = [];
  if (info.type === 'ext4' && info.journal === false) warnings.push(`the spool is on ext4 without a journal: ${NO_JOURNAL_CONSEQUENCES}`);
  if (info.type === 'ext2') warnings.push(`the spool is on ext2, which has no journal: ${NO_JOURNAL_CONSEQUENCES}`);
  if (isNetworkFileSystem(info)) {
    warnings.push(
      `the spool is on a network file system (${info.type}): the server does not see changes made on other hosts, and its lock cannot tell whether an owner on another host is alive (see "Not supported" in docs/guarantees.md)`,
    );
  }
  return warnings;
}

/** Where describeFileSystem reads from; tests pass plain data. */
export interface FileSystemSources {
  /** /proc/self/mountinfo, or undefined where there is none. */
  mountInfo(): string | undefined;
  realPath(path: string): string;
  /** `major:minor` of the file system that holds `path`. */
  deviceOf(path: string): string;
  /** The kernel's name for a block device (`vda1`, `dm-0`, `loop0`), if it is one. */
  blockDeviceName(majorMinor: string): string | undefined;
  /** /sys/fs/ext4/<name>/journal_task, if there is one. */
  ext4JournalTask(name: string): string | undefined;
}

export const systemSources: FileSystemSources = {
  mountInfo: () => readSmallTextFile('/proc/self/mountinfo'),
  realPath: resolveRealPath,
  deviceOf: deviceNumber,
  blockDeviceName,
  ext4JournalTask: (name) => readSmallTextFile(`/sys/fs/ext4/${name}/journal_task`),
};

/**
 * Describes the file system that holds `path` (which must exist); undefined
 * where that cannot be told (not Linux, no /proc, the path is gone).
 */
export function describeFileSystem(path: string, sources: FileSystemSources = systemSources): FileSystemInfo | undefined {
  try {
    const text = sources.mountInfo();
    if (text === undefined) return undefined;
    const majorMinor = sources.deviceOf(path);
    const mount = mountOf(parseMountInfo(text), sources.realPath(path), majorMinor);
    if (mount === undefined) return undefined;
    let journal: boolean | undefined;
    if (mount.type === 'ext4') {
      const name = sources.blockDeviceName(mount.majorMinor);
      journal = name === undefined ? undefined : hasJournal(sources.ext4JournalTask(name));
    }
    return { source: mount.source, mountPoint: mount.mountPoint, type: mount.type, journal };
  } catch {
    return undefined;
  }
}
