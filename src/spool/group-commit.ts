/**
 * Group commit, for whoever makes files durable (the client's durable enqueue,
 * the server's durable results): what is added while a commit runs joins the
 * next one, so N writers at once pay for one directory fsync, not N.
 * Invariants: at most one commit runs at a time; items are committed in the
 * order they were added; items a commit hands back (retry) go first in the next.
 *
 * The commit function does the writing (write each file, fsync them
 * concurrently, then the directory once) and settles its items itself: it
 * resolves or rejects their callers, or hands them back with retry().
 * @example
 * const commits = new GroupCommit<Job>(async (batch) => { ...write, fsync, publish, settle each... });
 * commits.add(job); // committed with whatever else arrives before the next turn of the event loop
 * await commits.idle();
 */
export class GroupCommit<T> {
  readonly #commit: (batch: T[]) => Promise<void>;
  /** Items waiting for the next commit. */
  #waiting: T[] = [];
  /** The batch of the commit under way. */
  #current: readonly T[] = [];
  /** The loop committing batches one after the other, while one runs. */
  #running: Promise<void> | undefined;
  #stopped = false;

  /** @param commit commits one batch; it must settle each of its items and never reject */
  constructor(commit: (batch: T[]) => Promise<void>) {
    this.#commit = commit;
  }

  /** Whether a commit is under way or due (items added this turn). */
  get busy(): boolean {
    return this.#running !== undefined;
  }

  /**
   * Joins the next commit. With none under way, one starts at the next turn of
   * the event loop, so that everything added in this turn joins it.
   */
  add(item: T): void {
    this.#waiting.push(item);
    this.#running ??= new Promise<void>((resolve) => setImmediate(() => void this.#loop().finally(resolve)));
  }

  /** From inside a commit: hands items back, ahead of those added since; the next commit takes them again. */
  retry(items: readonly T[]): void {
    if (items.length > 0) this.#waiting = [...items, ...this.#waiting];
  }

  /** The first item, waiting or being committed, that `match` accepts. O(items): not for a hot path. */
  find(match: (item: T) => boolean): T | undefined {
    return this.#waiting.find(match) ?? this.#current.find(match);
  }

  /** Resolves when nothing is left to commit (or, after stop(), once the commit under way ends). */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  /** Starts no further commit; items still waiting stay uncommitted. */
  stop(): void {
    this.#stopped = true;
  }

  async #loop(): Promise<void> {
    try {
      while (this.#waiting.length > 0 && !this.#stopped) {
        const batch = this.#waiting;
        this.#waiting = [];
        this.#current = batch;
        try {
          await this.#commit(batch);
        } finally {
          this.#current = [];
        }
      }
    } finally {
      this.#running = undefined;
    }
  }
}
