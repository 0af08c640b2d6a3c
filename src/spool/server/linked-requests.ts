/**
 * Request files with more than one name (hard links), for the owner rule
 * (`requestOwners`): a file's owner says who filed it only if no one else
 * gave it this name, and where fs.protected_hardlinks is 0 anyone may link a
 * file they do not own (root's pending/<id> to requested/<new id>, for root
 * to run again). A client publishes by link(2) from tmp/ and then removes its
 * temp name, so a second name in tmp/ is a publish in progress: wait for it to
 * go (at most LINK_SETTLE_MS). Any other second name: reject.
 */
import { join } from 'node:path';
import * as sfs from '../fs.js';

/** How long a request may share its file with a name in tmp/ before it is rejected (a publish removes that name at once). */
export const LINK_SETTLE_MS = 5_000;

export type LinkVerdict = 'trust' | 'wait' | 'reject';

/** What the server saw of a request file with `nlink` names. */
export interface LinkSighting {
  nlink: number;
  /** One of its other names is in tmp/: a client's publish in progress. */
  tempTwin: boolean;
  /** Its names when looked at again, after tmp/ was searched (the temp name may have gone meanwhile). */
  nlinkAfter: number;
  /** How long it has been seen with a temp twin. */
  waitedMs: number;
}

/** Whether a request file may be trusted for its owner, from what was seen of its names. */
export function judgeLinks(s: LinkSighting, settleMs = LINK_SETTLE_MS): LinkVerdict {
  if (s.nlink <= 1) return 'trust';
  if (s.tempTwin) return s.waitedMs < settleMs ? 'wait' : 'reject';
  return s.nlinkAfter <= 1 ? 'trust' : 'reject'; // no temp twin: trusted only if the publish ended while we looked
}

/** Judges request files with several names, remembering since when each has waited for its publish. */
export class LinkedRequests {
  readonly #since = new Map<string, number>();
  readonly #tmpDir: string;
  readonly #settleMs: number;

  constructor(tmpDir: string, settleMs = LINK_SETTLE_MS) {
    this.#tmpDir = tmpDir;
    this.#settleMs = settleMs;
  }

  /** The verdict for request `id`, read from `path` with `nlink` names and inode `dev`/`ino`; forgets it once decided. */
  judge(id: string, path: string, file: { nlink: number; dev: number; ino: number }, nowMs: number): LinkVerdict {
    if (file.nlink <= 1) {
      this.#since.delete(id);
      return 'trust';
    }
    const tempTwin = this.#hasTempTwin(file);
    const first = this.#since.get(id) ?? nowMs;
    const verdict = judgeLinks({ nlink: file.nlink, tempTwin, nlinkAfter: sfs.entryStat(path)?.nlink ?? 0, waitedMs: nowMs - first }, this.#settleMs);
    if (verdict === 'wait') this.#since.set(id, first);
    else this.#since.delete(id);
    return verdict;
  }

  /** How long request `id` has waited for its publish to end (0 if it is not waiting). */
  waitedMs(id: string, nowMs: number): number {
    const since = this.#since.get(id);
    return since === undefined ? 0 : nowMs - since;
  }

  /** Whether a name in tmp/ is the same file (tmp/ holds only writes in flight: a short list). */
  #hasTempTwin(file: { dev: number; ino: number }): boolean {
    return sfs.listEntries(this.#tmpDir).some((name) => {
      const stat = sfs.entryStat(join(this.#tmpDir, name));
      return stat !== undefined && stat.dev === file.dev && stat.ino === file.ino;
    });
  }
}
