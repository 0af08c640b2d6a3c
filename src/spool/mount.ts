/**
 * Which file system a spool lives on, and what about it an operator should
 * hear at start-up. The parsing is pure (plain text in, plain data out); the
 * reads of /proc and /sys go through ./fs.js.
 */
import { readSmallTextFile, resolveRealPath } from './fs.js';

export interface MountEntry {
  device: string;
  mountPoint: string;
  type: string;
}

export interface FileSystemInfo extends MountEntry {
  /** For ext4: whether it has a journal; undefined when not ext4 or not known. */
  journal: boolean | undefined;
}

/** Undoes /proc/mounts' octal escapes (`\040` for a space, `\011`, `\012`, `\134`). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses /proc/mounts (or /proc/self/mounts) text. */
export function parseMounts(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 3 || fields[1] === undefined || fields[2] === undefined) continue;
    entries.push({ device: unescapeMountField(fields[0]!), mountPoint: unescapeMountField(fields[1]), type: fields[2] });
  }
  return entries;
}

/**
 * The mount that holds `path` (an absolute path without symlinks): the
 * longest mount point that is `path` itself or one of its ancestors. Of two
 * mounts on the same point the later one is visible, as in the kernel.
 */
export function mountOf(mounts: readonly MountEntry[], path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const holds = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (holds && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** ext4 reports its journal thread in /sys/fs/ext4/<device>/journal_task, `<none>` without one. */
export function hasJournal(journalTask: string | undefined): boolean | undefined {
  if (journalTask === undefined) return undefined;
  const text = journalTask.trim();
  if (text === '<none>') return false;
  return /^\d+$/.test(text) ? true : undefined;
}

/** File system types on which the server's inotify watches and the lock's host check do not hold. */
const NETWORK_TYPES = new Set(['nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', '9p', 'ceph', 'fuse.sshfs', 'fuse.glusterfs', 'lustre']);

/** What an operator should be told about a spool on this file system (none for the usual ones). */
export function fileSystemWarnings(info: FileSystemInfo): string[] {
  const warnings: string[] = [];
  if (info.type === 'ext4' && info.journal === false) {
    warnings.push(
      'the spool is on ext4 without a journal: after a power loss or kernel crash a rename may be half done until fsck repairs it, so neither mode keeps its power-loss promise, and creating files slows while requests are added and removed quickly (see "Which file system" in docs/operations.md)',
    );
  }
  if (NETWORK_TYPES.has(info.type)) {
    warnings.push(
      `the spool is on a network file system (${info.type}): the server does not see changes made on other hosts, and its lock cannot tell whether an owner on another host is alive (see "Not supported" in docs/guarantees.md)`,
    );
  }
  return warnings;
}

/**
 * Describes the file system that holds `path`, from /proc/self/mounts and
 * /sys/fs/ext4; undefined where those cannot be read (not Linux, no /proc).
 */
export function describeFileSystem(path: string): FileSystemInfo | undefined {
  let mountsText: string | undefined;
  let realPath: string;
  try {
    mountsText = readSmallTextFile('/proc/self/mounts');
    realPath = resolveRealPath(path);
  } catch {
    return undefined;
  }
  if (mountsText === undefined) return undefined;
  const mount = mountOf(parseMounts(mountsText), realPath);
  if (mount === undefined) return undefined;
  let journal: boolean | undefined;
  if (mount.type === 'ext4' && mount.device.startsWith('/')) {
    try {
      const name = resolveRealPath(mount.device).split('/').pop() ?? '';
      journal = hasJournal(readSmallTextFile(`/sys/fs/ext4/${name}/journal_task`));
    } catch {
      journal = undefined;
    }
  }
  return { ...mount, journal };
}
