/**
 * How a waiting client takes its result: complete/<id> is used only if it is a
 * regular file that decodes as a result for that id, and is then claimed by
 * unlinking it (one remover wins). Anything else there (a symlink, a FIFO,
 * garbage, another request's result) was not written by the server for this
 * request: it is left for the server to replace, and the client waits on.
 */
import { isErrno, ProtocolError } from '../errors.js';
import { encodeAbortReason } from './abort-reason.js';
import { decodeResult, MAX_RESULT_BYTES, type ResultEnvelope } from './codec.js';
import { entryPath, removeLogs, type SpoolPaths } from './layout.js';
import { completeOutputFromLogs, isOutputCut } from './output-logs.js';
import * as sfs from './fs.js';

/** What a look at complete/<id> found: the claimed result, nothing (yet, or another waiter won), or something that is not this request's result. */
export type Claim = { result: ResultEnvelope } | { refused: string } | undefined;

/**
 * Claims complete/<id>: reads it, then removes it. Only one remover can
 * succeed, and only the one that did returns the result, so a result is
 * delivered to at most one waiter. In a shared spool, where the sticky
 * complete/ only lets the server remove files, the client files an abort
 * instead and the server removes the result (the ancestor's hand-off).
 */
export function claimResult(paths: SpoolPaths, id: string, keepLogs: boolean, expected: boolean): Claim {
  const path = entryPath(paths, 'complete', id);
  const read = readResult(path, id, expected);
  if (read === undefined || 'refused' in read) return read;
  try {
    if (!sfs.removeEntry(path)) return undefined; // another waiter claimed it first
  } catch (err) {
    if (!isErrno(err, 'EACCES') && !isErrno(err, 'EPERM')) throw err;
    // Read the whole output before the abort: the server removes the logs with the result.
    if (read.result.logs === true && !keepLogs) completeOutputFromLogs(paths, id, read.result.value);
    sfs.publish(sfs.writeTemp(paths.dirs.tmp, 'abort', encodeAbortReason('user')), entryPath(paths, 'aborting', id));
    return read;
  }
  if (read.result.logs === true && !keepLogs) {
    completeOutputFromLogs(paths, id, read.result.value);
    removeLogs(paths, id);
  }
  return read;
}

/**
 * Claims a result that was read without claiming it (peekResult()): removes
 * complete/<id> and its logs, or in a shared spool files an abort for the
 * server to remove them. False if it was gone already (another waiter claimed it).
 */
export function removeResult(paths: SpoolPaths, id: string): boolean {
  const path = entryPath(paths, 'complete', id);
  try {
    if (!sfs.removeEntry(path)) return false;
  } catch (err) {
    if (!isErrno(err, 'EACCES') && !isErrno(err, 'EPERM')) throw err;
    if (!sfs.entryExists(path)) return false;
    sfs.publish(sfs.writeTemp(paths.dirs.tmp, 'abort', encodeAbortReason('user')), entryPath(paths, 'aborting', id));
    return true;
  }
  removeLogs(paths, id);
  return true;
}

/**
 * Reads complete/<id> without claiming it (a wait with `keep`, peek()): it
 * removes nothing and files nothing, so a waiter that claims the result,
 * before, meanwhile or later, loses nothing to it. The whole output is read
 * from the logs unless `keepLogs`. A log gone while the result is gone too
 * means another waiter claimed it (or an abort removed it) during the read:
 * undefined, as if it had not been there, rather than a result that looks cut.
 */
export function peekResult(paths: SpoolPaths, id: string, keepLogs: boolean, expected: boolean): Claim {
  const path = entryPath(paths, 'complete', id);
  const read = readResult(path, id, expected);
  if (read === undefined || 'refused' in read || read.result.logs !== true || keepLogs) return read;
  completeOutputFromLogs(paths, id, read.result.value);
  return isOutputCut(read.result.value) && !sfs.entryExists(path) ? undefined : read;
}

/** Reads complete/<id> without claiming it; a ProtocolError (not a regular file, too big, not a result) refuses it. */
function readResult(path: string, id: string, expected: boolean): Claim {
  let result: ResultEnvelope;
  try {
    // complete/ is the server's: only it (or root) adds entries there.
    const bytes = sfs.readEntry(path, MAX_RESULT_BYTES, { trustedDirectory: expected });
    if (bytes === undefined) return undefined;
    result = decodeResult(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return { refused: err.message };
    throw err;
  }
  return result.id === id ? { result } : { refused: `it holds the result of request ${result.id}` };
}
