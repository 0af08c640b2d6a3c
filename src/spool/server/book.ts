/**
 * The server's books: one entry per request id it holds, with the request's
 * stage and times. `held()` is the one answer to "does the server know this id?".
 * Invariants: an id is in the line exactly while its stage is `requested` or
 * `pending`, in id order (so arrival order); every `requested` id is in the
 * admitted list until it is parked or leaves that stage; an id whose result is
 * with the writer (`answering`) is not taken in again until it is published.
 */
import type { LongTimeout } from '../../long-timer.js';
import type { MetricsStamps } from '../../metrics.js';
import { PendingQueue } from './pending-queue.js';

/** What take…() returns when there is nothing to take: no allocation per tick. */
const NONE: readonly string[] = Object.freeze([]);

/**
 * Where a request is in the server's hands:
 * - `requested`: admitted this tick, in line, its file still in requested/
 *   (one that starts at once goes straight to running/: one rename, not two);
 * - `pending`: in line, its file in pending/;
 * - `running`: its task runs, its file in running/;
 * - `answering`: its result is with the result writer, not published yet;
 * - `tombstone`: an abort came for it before the request did (not held: see held()).
 */
export type Stage = 'requested' | 'pending' | 'running' | 'answering' | 'tombstone';

/** Its stage and times; the metrics' monotonic stamps (MetricsStamps) live here too, not in a second set of books. */
export interface RequestEntry extends MetricsStamps {
  stage: Stage;
  /** Wall clock (ms) when it joined the line (admitted, or found in pending/ at start): results carry it. */
  queuedAt?: number | undefined;
  /** Wall clock (ms) when its task started. */
  startedAt?: number;
  /** Its run timeout, and the timer that enforces it. */
  runTimeoutMs?: number;
  deadline?: LongTimeout;
  /** An abort arrived while its result was being written: carried out once the writer lets go of it. */
  abortAfterPublish?: boolean;
  /** Tombstone: wall clock (ms) when its abort was first seen. */
  abortSeenAt?: number;
}

export class RequestBook {
  readonly #entries = new Map<string, RequestEntry>();
  /** The `requested` and `pending` ids, in FIFO order. */
  readonly #line = new PendingQueue();
  /** Ids admitted (stage `requested`) not parked yet; may hold ids that left that stage (skipped). */
  #admitted: string[] = [];
  /** Ids whose run timeout passed, to terminate at the next tick. */
  #expired: string[] = [];
  #running = 0;
  /** Planted non-empty directories the server cannot remove, as `dir/id`: answered once, then left alone. */
  readonly #planted = new Set<string>();
  /** Results in complete/ no client has claimed yet (recounted at each rescan). */
  unclaimedResults = 0;

  /** Requests in line. */
  get queued(): number {
    return this.#line.size;
  }

  /** Requests whose task runs. */
  get running(): number {
    return this.#running;
  }

  get(id: string): RequestEntry | undefined {
    return this.#entries.get(id);
  }

  /** Whether the server holds this request: in line, running, or answering (a tombstone is not a request). */
  held(id: string): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && entry.stage !== 'tombstone';
  }

  /** Queued ids in order, then running ones: what housekeeping must not touch. */
  *live(): IterableIterator<string> {
    yield* this.#line;
    for (const [id, entry] of this.#entries) if (entry.stage === 'running') yield id;
  }

  /** Ids of running requests (a copy: safe to change the book meanwhile). */
  runningIds(): string[] {
    const ids: string[] = [];
    for (const [id, entry] of this.#entries) if (entry.stage === 'running') ids.push(id);
    return ids;
  }

  /** Puts an id in line: just admitted from requested/, or found in pending/. */
  enqueue(id: string, stage: 'requested' | 'pending', queuedAt: number, waitingSince: number | undefined): void {
    this.#set(id, { stage, queuedAt, waitingSince });
    this.#line.insert(id);
    if (stage === 'requested') this.#admitted.push(id);
  }

  /** Takes the first id in line out of it (its entry keeps its stage until start() or requeue()). */
  next(): [string, RequestEntry] | undefined {
    const id = this.#line.shift();
    return id === undefined ? undefined : [id, this.#entries.get(id)!];
  }

  /** Puts an id taken by next() back in line, in its place. */
  requeue(id: string): void {
    this.#line.insert(id);
  }

  /** The ids admitted since the last park; the list starts afresh. */
  takeAdmitted(): readonly string[] {
    if (this.#admitted.length === 0) return NONE;
    const ids = this.#admitted;
    this.#admitted = [];
    return ids;
  }

  /** Ids a park could not handle (a fault): parked at the next tick. */
  keepAdmitted(ids: readonly string[]): void {
    this.#admitted.push(...ids);
  }

  /** Its file moved from requested/ to pending/. */
  parked(entry: RequestEntry): void {
    entry.stage = 'pending';
  }

  /** Its task started (its file is in running/). */
  started(entry: RequestEntry, startedAt: number, runningSince: number | undefined): void {
    entry.stage = 'running';
    entry.startedAt = startedAt;
    entry.runningSince = runningSince;
    this.#running++;
  }

  /** Its result went to the writer; an entry is made for a request the server never held (rejected at sight, or failed at recovery). */
  answering(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.stage === 'tombstone') return this.#set(id, { stage: 'answering' });
    this.#leave(entry);
    if (entry.stage === 'requested' || entry.stage === 'pending') this.#line.remove(id);
    entry.stage = 'answering';
  }

  /** The request left the server's hands: finished, aborted, gone, or left running at shutdown. Returns its entry. */
  forget(id: string): RequestEntry | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#leave(entry);
    if (entry.stage === 'requested' || entry.stage === 'pending') this.#line.remove(id);
    this.#entries.delete(id);
    return entry;
  }

  /** Records an abort for an id the server does not hold; returns when it was first seen. */
  tombstone(id: string, now: number): number {
    const entry = this.#entries.get(id);
    if (entry?.stage === 'tombstone') return entry.abortSeenAt ?? now;
    this.#set(id, { stage: 'tombstone', abortSeenAt: now });
    return now;
  }

  /** Drops a tombstone (its abort is gone or done); leaves a held request alone. */
  dropTombstone(id: string): void {
    if (this.#entries.get(id)?.stage === 'tombstone') this.#entries.delete(id);
  }

  /** A running request's run timeout passed. */
  expire(id: string): void {
    this.#expired.push(id);
  }

  /** The ids whose run timeout passed since the last call. */
  takeExpired(): readonly string[] {
    if (this.#expired.length === 0) return NONE;
    const ids = this.#expired;
    this.#expired = [];
    return ids;
  }

  /** Leaves a planted non-empty directory at `dir/id` alone from now on; false if it already was. */
  plant(dir: string, id: string): boolean {
    if (this.#planted.has(`${dir}/${id}`)) return false;
    this.#planted.add(`${dir}/${id}`);
    return true;
  }

  /** Whether `dir/id` is a planted directory the server leaves alone. */
  isPlanted(dir: string, id: string): boolean {
    return this.#planted.size > 0 && this.#planted.has(`${dir}/${id}`);
  }

  #set(id: string, entry: RequestEntry): void {
    const old = this.#entries.get(id);
    if (old !== undefined) this.#leave(old);
    this.#entries.set(id, entry);
  }

  /** Undoes what its current stage holds: the running count, the deadline timer. */
  #leave(entry: RequestEntry): void {
    if (entry.stage !== 'running') return;
    this.#running--;
    entry.deadline?.clear();
    entry.deadline = undefined;
  }
}
