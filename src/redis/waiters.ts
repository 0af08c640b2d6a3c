/**
 * The waits of one Redis client: `done <id>` messages poke the waits for that
 * id, and one timer re-checks every wait (a lost message only delays it).
 */
export class Waiters {
  readonly #intervalMs: number;
  /** id → the event pokes of its waits. */
  readonly #byId = new Map<string, Set<() => void>>();
  /** Each wait's event poke → its re-check. */
  readonly #rechecks = new Map<() => void, () => void>();
  #timer: NodeJS.Timeout | undefined;

  constructor(recheckIntervalMs: number) {
    this.#intervalMs = recheckIntervalMs;
  }

  add(id: string, onEvent: () => void, recheck: () => void): void {
    let set = this.#byId.get(id);
    if (set === undefined) this.#byId.set(id, (set = new Set()));
    set.add(onEvent);
    this.#rechecks.set(onEvent, recheck);
    this.#timer ??= setInterval(() => {
      for (const recheckOne of this.#rechecks.values()) recheckOne();
    }, this.#intervalMs);
  }

  remove(id: string, onEvent: () => void): void {
    const set = this.#byId.get(id);
    set?.delete(onEvent);
    if (set?.size === 0) this.#byId.delete(id);
    this.#rechecks.delete(onEvent);
    if (this.#rechecks.size === 0) this.clear();
  }

  /** A `done <id>` message: the waits for `id` look now. */
  arrived(id: string): void {
    for (const onEvent of [...(this.#byId.get(id) ?? [])]) onEvent();
  }

  /** Forgets every wait and stops the timer (the client closes). */
  clear(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#rechecks.clear();
    this.#byId.clear();
  }
}
