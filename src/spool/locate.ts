/**
 * Where a request is in a spool: the one lookup of an id by its files, for
 * every reader that has no books of its own (clients, `wq`, status views).
 * States are checked in flow order, so a request that moves forward while it
 * is looked for is still found.
 */
import { entryPath, REQUEST_STATES, stagedResultPath, type RequestState, type SpoolPaths } from './layout.js';
import * as sfs from './fs.js';

/**
 * Where a request is, checked in flow order so one that moves forward
 * meanwhile is still found. With `withoutComplete`, an entry at complete/<id>
 * does not count (it was refused as not a result).
 */
export function locateRequest(paths: SpoolPaths, id: string, withoutComplete = false): RequestState | undefined {
  for (const state of REQUEST_STATES) {
    if (state === 'complete' && withoutComplete) continue;
    if (sfs.entryExists(entryPath(paths, state, id))) return state;
    // Between its steps, a result being published waits as running/<id>.result.
    if (state === 'running' && sfs.entryExists(stagedResultPath(paths, id))) return 'running';
  }
  return undefined;
}
