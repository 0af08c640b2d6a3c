/**
 * Abort files: `aborting/<id>`, empty or holding one short ASCII word saying
 * why (`timeout`, `run-timeout`, `cancelled`, `user`), used only to label metrics
 * and logs. Anything else in the file is ignored, never trusted.
 */
import { ProtocolError } from '../errors.js';
import * as sfs from './fs.js';
import { ABORT_REASONS, type AbortReason } from './types.js';

export { ABORT_REASONS, type AbortReason } from './types.js';

const MAX_REASON_BYTES = 64;

export function encodeAbortReason(reason: AbortReason): Buffer {
  return Buffer.from(`${reason}\n`, 'ascii');
}

/**
 * The reason in an abort file; 'user' when absent, unreadable or unknown. The
 * reason only labels metrics and logs, so no error reading it (not a regular
 * file, EMFILE, EACCES …) may stop the abort itself.
 */
export function readAbortReason(path: string): AbortReason {
  let bytes: Buffer | undefined;
  try {
    bytes = sfs.readEntry(path, MAX_REASON_BYTES);
  } catch (err) {
    // Not a regular file (ProtocolError), or a system error (EMFILE, EACCES …): the reason is only a label.
    if (err instanceof ProtocolError || typeof (err as NodeJS.ErrnoException | undefined)?.code === 'string') return 'user';
    throw err;
  }
  const word = bytes?.toString('ascii').trim();
  return (ABORT_REASONS as readonly string[]).includes(word ?? '') ? (word as AbortReason) : 'user';
}
