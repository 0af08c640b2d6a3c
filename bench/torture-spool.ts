/**
 * What the crash-torture harness reads from the spool, only ever while no
 * server runs or once the queue has drained: the backlog a starting server must
 * queue, a decode of every request file (a half request is a violation), and
 * what is left at the end. It never writes to the spool.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeRequest, decodeResult, MAX_REQUEST_BYTES, MAX_RESULT_BYTES } from '../src/spool/codec.js';
import { readEntry } from '../src/spool/fs.js';
import { SPOOL_DIRS } from '../src/spool/layout.js';
import { isRequestId } from '../src/spool/request-id.js';
import type { LeftoverResult, LeftoverTemp } from './torture-check.js';
import type { TortureValue } from './torture-common.js';

/** States a request waits or runs in; what a starting server queues. */
const QUEUED_STATES = ['requested', 'pending', 'running'] as const;

/**
 * Ids the next server must queue at its first tick: in requested/, pending/
 * or running/ and without a result. Listed with no server running (clients
 * only add to requested/ and remove from complete/ meanwhile).
 */
export function backlogOf(spool: string): string[] {
  const ids = new Set<string>();
  for (const dir of QUEUED_STATES) for (const name of readdirSync(join(spool, dir))) if (isRequestId(name)) ids.add(name);
  for (const name of readdirSync(join(spool, 'complete'))) ids.delete(name);
  // running/<id>.result: a result written but not yet published. The next server publishes a
  // complete one (its request is finished) and discards a torn one (its request runs again).
  for (const name of readdirSync(join(spool, 'running'))) {
    if (!name.endsWith('.result')) continue;
    const id = name.slice(0, -'.result'.length);
    if (stagedResultIsComplete(join(spool, 'running', name), id)) ids.delete(id);
  }
  return [...ids].sort();
}

function stagedResultIsComplete(path: string, id: string): boolean {
  try {
    const bytes = readEntry(path, MAX_RESULT_BYTES);
    return bytes !== undefined && decodeResult(bytes).id === id;
  } catch {
    return false;
  }
}

/** Decodes every request file, with no server running: how many, and which did not decode (half requests). */
export function auditRequests(spool: string): { audited: number; torn: string[] } {
  let audited = 0;
  const torn: string[] = [];
  for (const dir of QUEUED_STATES) {
    for (const name of readdirSync(join(spool, dir))) {
      if (!isRequestId(name)) continue; // a staged result (running/<id>.result) is not a request
      const bytes = readEntry(join(spool, dir, name), MAX_REQUEST_BYTES);
      if (bytes === undefined) continue;
      audited++;
      try {
        decodeRequest(bytes);
      } catch (err) {
        torn.push(`${dir}/${name}: ${(err as Error).message}`);
      }
    }
  }
  return { audited, torn };
}

/** Every directory's names, and the root's as '.'. */
export function listSpool(spool: string): Record<string, string[]> {
  const out: Record<string, string[]> = { '.': readdirSync(spool).sort() };
  for (const dir of SPOOL_DIRS) out[dir] = readdirSync(join(spool, dir)).sort();
  return out;
}

/** A result nobody claimed: its status and value or error message, or why it cannot be read. */
export function readLeftoverResult(spool: string, id: string): LeftoverResult {
  try {
    const bytes = readEntry(join(spool, 'complete', id), MAX_RESULT_BYTES);
    if (bytes === undefined) return { id, unreadable: 'vanished' };
    const r = decodeResult(bytes);
    const out: LeftoverResult = { id, status: r.status };
    if (r.ok) out.value = r.value as TortureValue;
    else if (r.error !== undefined) out.error = r.error.message;
    return out;
  } catch (err) {
    return { id, unreadable: (err as Error).message };
  }
}

/** A leftover temp file: its size and, for a request, whether it is whole (killed after writing it) or torn (killed mid-write). */
export function readLeftoverTemp(spool: string, name: string): LeftoverTemp {
  const path = join(spool, 'tmp', name);
  const temp: LeftoverTemp = { name, size: existsSync(path) ? statSync(path).size : -1 };
  if (name.startsWith('request.')) {
    try {
      decodeRequest(readFileSync(path));
      temp.decodes = true;
    } catch {
      temp.decodes = false;
    }
  }
  return temp;
}
