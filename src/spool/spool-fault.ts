/**
 * Why a spool cannot be used, told from a system error met while using it:
 * one sentence that names the spool, the cause and the part of the spool
 * involved, never an internal temp file. Pure: plain data in, a message out;
 * errors that are not the spool's fault (EMFILE, ENOMEM …) get none.
 */
import { SpoolError, WorkQueueError } from '../errors.js';

/** The parts of a Node system error this looks at. */
export interface SystemFault {
  code?: string;
  syscall?: string;
  path?: string;
}

/** Error codes that mean the spool itself cannot be used, and how each reads. */
const CAUSES: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'its file system is read-only',
  ENOTDIR: 'a part of its path is not a directory',
  ENOSPC: 'its file system is full',
  EDQUOT: 'the disk quota is used up',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'its path is too long',
  EISDIR: 'a directory is where a file should be',
};

/** Whether a thrown value is a system error that says the spool cannot be used. */
export function isSpoolFault(err: unknown): err is SystemFault & Error {
  const code = (err as SystemFault | null)?.code;
  return err instanceof Error && typeof code === 'string' && Object.hasOwn(CAUSES, code) && typeof (err as SystemFault).syscall === 'string';
}

/**
 * The message for a system error met under `root`, e.g. "spool /srv/wq cannot
 * be used: permission denied for uid 1001 (creating a file in its tmp/
 * directory)"; undefined for an error that is not the spool's fault.
 */
export function describeSpoolFault(root: string, fault: SystemFault, uid?: number): string | undefined {
  const cause = fault.code === undefined ? undefined : CAUSES[fault.code];
  if (cause === undefined) return undefined;
  const who = (fault.code === 'EACCES' || fault.code === 'EPERM') && uid !== undefined ? ` for uid ${uid}` : '';
  const where = fault.path === undefined ? undefined : placeOf(root, fault.path, fault.syscall);
  return `spool ${root} cannot be used: ${cause}${who}${where === undefined ? '' : ` (${where})`}`;
}

/** What was being done where, in the spool's own terms: "creating a file in its tmp/ directory". */
function placeOf(root: string, path: string, syscall: string | undefined): string | undefined {
  const base = root.replace(/\/+$/, '') || '/';
  if (path === base) return `${doing(syscall, false)} the spool directory`;
  if (!path.startsWith(base === '/' ? '/' : `${base}/`)) return `${doing(syscall, false)} ${path}`;
  const relative = path.slice(base === '/' ? 1 : base.length + 1);
  const [first = '', ...rest] = relative.split('/');
  if (rest.length === 0) {
    // A file beside the state directories: `format`, `server.lock`, or write-file-atomic's `format.NNN` while writing `format`.
    if (/^format\.\d+$/.test(first)) return 'writing its format file';
    return `${doing(syscall, false)} its ${first}${STATE_LIKE.test(first) ? '/ directory' : first === 'format' ? ' file' : ''}`;
  }
  // Inside a directory: temp names are internal, so only the directory is named there.
  if (first === 'tmp') return `${doing(syscall, true)} its tmp/ directory`;
  return `${doing(syscall, false)} its ${first}/${rest.join('/')}`;
}

/** Names of a spool's directories (not its `format` or `server.lock` files). */
const STATE_LIKE = /^(requested|pending|running|complete|aborting|tmp|logs)$/;

function doing(syscall: string | undefined, inDirectory: boolean): string {
  switch (syscall) {
    case 'open':
      return inDirectory ? 'creating a file in' : 'opening';
    case 'link':
    case 'rename':
    case 'symlink':
      return inDirectory ? 'adding a file to' : 'publishing';
    case 'mkdir':
      return 'creating';
    case 'unlink':
    case 'rmdir':
      return inDirectory ? 'removing a file from' : 'removing';
    case 'scandir':
      return 'listing';
    case 'write':
    case 'fsync':
      return inDirectory ? 'writing a file in' : 'writing';
    default:
      return inDirectory ? 'using' : 'looking at';
  }
}

/**
 * `err` as a SpoolError that says why the spool at `root` cannot be used,
 * with the system error as its `cause`; any other error unchanged. (Reads this
 * process's uid for the message.)
 */
export function asSpoolError(root: string, err: unknown): unknown {
  if (err instanceof WorkQueueError || !isSpoolFault(err)) return err;
  return new SpoolError(describeSpoolFault(root, err, process.getuid?.())!, { cause: err });
}
