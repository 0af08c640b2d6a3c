/**
 * What `wq serve` needs to know of a spool before a WorkQueueServer runs it:
 * whether other users could put requests there (plain command mode would run
 * them as this user), and where a command's output logs go. Looks only:
 * creates nothing (the server creates what is missing once it has checked the path).
 */
import { foreignWritable, type DirectoryAccess } from './permissions.js';
import { serverIdentity, spoolDirectories } from './access.js';
import { spoolPaths } from './layout.js';
import { asSpoolError } from './spool-fault.js';

/** Which of the spool's directories users other than this one (and root) can write, described; empty if none. */
export function writableByOthers(spool: string): string[] {
  const who = serverIdentity();
  let dirs: DirectoryAccess[];
  try {
    dirs = spoolDirectories(spoolPaths(spool));
  } catch (err) {
    throw asSpoolError(spool, err); // EACCES: a spool this user may not even look into
  }
  return foreignWritable(dirs, who.uid, who.privateGids);
}

/** The directory where a command task manager writes its output logs (logs/). */
export function commandLogDir(spool: string): string {
  return spoolPaths(spool).dirs.logs;
}
