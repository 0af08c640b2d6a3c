/**
 * The requests one user has queued or running in a spool (`abortAll()`, `wq
 * abort --all`), told by who owns their files: a client creates its request
 * file, and the server's renames from state to state keep its owner, where the
 * uid an envelope records is only its client's word. Read-only: it lists and
 * lstats, never opens a request.
 */
import { entryPath, type SpoolPaths } from './layout.js';
import { isRequestId } from './request-id.js';
import * as sfs from './fs.js';

/** The states of a request that has not finished, in flow order. */
const ACTIVE_STATES = ['requested', 'pending', 'running'] as const;

/**
 * Ids of the requests whose files `uid` owns in requested/, pending/ or
 * running/, oldest first. The directories are listed in flow order, and a
 * request that moved on between its listing and its lstat is looked for
 * further along, so one that moves forward meanwhile is not missed; one that
 * finished meanwhile is left out.
 */
export function ownActiveRequests(paths: SpoolPaths, uid: number): string[] {
  const own = new Set<string>();
  ACTIVE_STATES.forEach((state, i) => {
    for (const id of sfs.listEntries(paths.dirs[state])) {
      if (own.has(id) || !isRequestId(id)) continue;
      for (const later of ACTIVE_STATES.slice(i)) {
        const stat = sfs.entryStat(entryPath(paths, later, id));
        if (stat === undefined) continue;
        if (stat.isFile() && stat.uid === uid) own.add(id);
        break;
      }
    }
  });
  return [...own].sort();
}
