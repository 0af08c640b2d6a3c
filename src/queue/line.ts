/**
 * Places in line, computed once for every view (`wq status`, the live line of
 * a wait): the waiting requests in id order, which is the server's FIFO order.
 * Pure: a backend lists its waiting ids, this orders them.
 */
import type { RequestState } from './types.js';

export type WaitingState = Extract<RequestState, 'requested' | 'pending'>;

/** A waiting request and its 1-based place in line (1 starts next). */
export interface InLine {
  id: string;
  state: WaitingState;
  position: number;
}

/**
 * The line: every waiting id, requested and pending together, in id order.
 * An id listed in both (it moved between the two listings) is in it twice, as
 * each listing saw it.
 */
export function waitingLine(requested: readonly string[], pending: readonly string[]): InLine[] {
  const waiting = [...requested.map((id) => [id, 'requested'] as const), ...pending.map((id) => [id, 'pending'] as const)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return waiting.map(([id, state], i) => ({ id, state, position: i + 1 }));
}

/** Where `id` stands in `line` (1 + the waiting ids before it), whether or not it is listed there itself. */
export function placeInLine(line: readonly InLine[], id: string): number {
  let ahead = 0;
  for (const entry of line) if (entry.id < id) ahead++;
  return ahead + 1;
}
