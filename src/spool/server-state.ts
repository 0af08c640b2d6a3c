/**
 * `server.state`: what the serving process says holds its queue, for `wq
 * status` and waiting clients (docs/protocol.md, *Server state*). The server
 * alone writes it, whole, in tmp/, and renames it into place, so a reader sees
 * one version or the next, never a mix. It counts only while the server that
 * wrote it holds the lock: a crashed server leaves it behind, and the next one
 * replaces it. Decoding checks every field; anything else reads as no state.
 */
import { ProtocolError } from '../errors.js';
import type { QueueHold } from '../protocol.js';
import type { LockOwner } from './lock.js';
import type { SpoolPaths } from './layout.js';
import * as sfs from './fs.js';

/** A state is a hundred bytes or so; anything larger is not one. */
export const MAX_SERVER_STATE_BYTES = 4096;
/** Temp files of server.state are `tmp/state.<pid>.<counter>`. */
const TEMP_TAG = 'state';

export interface ServerState {
  /** The server that wrote it: its pid and start time, as in its lock. */
  pid: number;
  startedAt: number;
  /** What keeps the first queued request from starting. */
  hold: QueueHold;
  /** Since when (server wall clock, ms) that has been so. */
  since: number;
}

export function encodeServerState(state: ServerState): Buffer {
  return Buffer.from(`${JSON.stringify({ v: 1, pid: state.pid, startedAt: state.startedAt, since: state.since, hold: state.hold })}\n`);
}

/** The state in `bytes`, or undefined when they are not a valid version-1 state. */
export function decodeServerState(bytes: Uint8Array): ServerState | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { v, pid, startedAt, since, hold } = value as Record<string, unknown>;
  if (v !== 1 || !Number.isSafeInteger(pid) || !Number.isFinite(startedAt) || !Number.isFinite(since)) return undefined;
  const decoded = decodeHold(hold);
  return decoded === undefined ? undefined : { pid: pid as number, startedAt: startedAt as number, since: since as number, hold: decoded };
}

function decodeHold(value: unknown): QueueHold | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const h = value as Record<string, unknown>;
  const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  const load = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  switch (h.reason) {
    case 'none':
    case 'stopping':
    case 'results':
    case 'fault':
      return { reason: h.reason };
    case 'capacity':
      return count(h.maxTasks) ? { reason: 'capacity', maxTasks: h.maxTasks } : undefined;
    case 'load':
      return load(h.load) && load(h.maxLoad) ? { reason: 'load', load: h.load, maxLoad: h.maxLoad } : undefined;
    case 'orphans':
      return count(h.tasks) ? { reason: 'orphans', tasks: h.tasks } : undefined;
    default:
      return undefined;
  }
}

/** Writes the state in full and renames it into place (a fault is thrown: the caller retries). */
export function writeServerState(paths: SpoolPaths, state: ServerState): void {
  sfs.replaceEntry(sfs.writeTemp(paths.dirs.tmp, TEMP_TAG, encodeServerState(state)), paths.stateFile);
}

/** Removes the state (a stopping server, while it still holds the lock). */
export function removeServerState(paths: SpoolPaths): void {
  sfs.removeEntry(paths.stateFile);
}

/**
 * The state the lock's holder published; undefined when there is none, it is
 * not a state, or another server wrote it (a crashed one's leftover).
 */
export function readServerState(paths: SpoolPaths, owner: LockOwner): ServerState | undefined {
  let bytes: Buffer | undefined;
  try {
    bytes = sfs.readEntry(paths.stateFile, MAX_SERVER_STATE_BYTES);
  } catch (err) {
    if (err instanceof ProtocolError) return undefined; // planted, not a state
    throw err;
  }
  const state = bytes === undefined ? undefined : decodeServerState(bytes);
  return state !== undefined && state.pid === owner.pid && state.startedAt === owner.startedAt ? state : undefined;
}
