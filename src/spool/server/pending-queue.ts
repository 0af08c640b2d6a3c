/**
 * The server's FIFO of pending request ids, ordered by id (so by arrival time).
 * Arrivals almost always have the largest id and are appended in O(1); a late
 * one with an older timestamp is inserted in order. Removal (an abort) is O(1)
 * and lazy: the id leaves the member set and is skipped when it reaches the head.
 */
export class PendingQueue {
  #items: string[] = [];
  #head = 0;
  readonly #members = new Set<string>();
  /** Removed ids whose entry is still in #items (lazy removal), so a re-insert reuses it. */
  readonly #removed = new Set<string>();

  get size(): number {
    return this.#members.size;
  }

  has(id: string): boolean {
    return this.#members.has(id);
  }

  /** Adds an id in order; false if it is already queued. */
  insert(id: string): boolean {
    if (this.#members.has(id)) return false;
    this.#members.add(id);
    if (this.#removed.delete(id)) return true; // its old entry is still in place, in order
    const items = this.#items;
    if (items.length === this.#head || items[items.length - 1]! < id) {
      items.push(id);
      return true;
    }
    let lo = this.#head;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]! < id) lo = mid + 1;
      else hi = mid;
    }
    items.splice(lo, 0, id);
    return true;
  }

  /** Forgets an id; false if it was not queued. */
  remove(id: string): boolean {
    if (!this.#members.delete(id)) return false;
    this.#removed.add(id);
    return true;
  }

  /** Removes and returns the oldest queued id. */
  shift(): string | undefined {
    this.#skipRemoved();
    if (this.#head >= this.#items.length) return undefined;
    const id = this.#items[this.#head++]!;
    this.#members.delete(id);
    this.#compact();
    return id;
  }

  /** Queued ids in order. */
  *[Symbol.iterator](): IterableIterator<string> {
    for (let i = this.#head; i < this.#items.length; i++) {
      const item = this.#items[i]!;
      if (this.#members.has(item)) yield item;
    }
  }

  #skipRemoved(): void {
    while (this.#head < this.#items.length && !this.#members.has(this.#items[this.#head]!)) {
      this.#removed.delete(this.#items[this.#head]!);
      this.#head++;
    }
  }

  #compact(): void {
    // Drop the consumed prefix once it dominates, so memory follows the live size.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
