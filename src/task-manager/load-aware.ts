/**
 * Wraps another task manager and starts nothing new while the machine is
 * loaded: capacity is the inner manager's, and only while the 1-minute load
 * average is below `maxLoad`. While it holds work back it samples the load
 * every `sampleIntervalMs` (the kernel updates it every 5 s) and wakes the
 * server when the load has dropped; otherwise it runs no timer.
 */
import { loadavg } from 'node:os';
import { InvalidOptionError } from '../errors.js';
import { MAX_TIMER_DELAY_MS } from '../long-timer.js';
import type { ManagerHold } from '../protocol.js';
import type { TaskManager, TaskManagerEvent, TaskOutcome, TaskProcess } from './types.js';
import type { TaskInput } from '../task-input.js';

export interface LoadAwareTaskManagerOptions {
  /** Start new tasks only while the 1-minute load average is below this. */
  maxLoad: number;
  /** How often to look at the load while work is held back. @default 5000 */
  sampleIntervalMs?: number;
  /** The load source, injectable for tests. @default the 1-minute os.loadavg() */
  load?: () => number;
}

export class LoadAwareTaskManager implements TaskManager {
  readonly #inner: TaskManager;
  readonly #maxLoad: number;
  readonly #sampleIntervalMs: number;
  readonly #load: () => number;
  #current = 0;
  #wake: () => void = () => {};
  #timer: NodeJS.Timeout | undefined;

  constructor(inner: TaskManager, options: LoadAwareTaskManagerOptions) {
    const { maxLoad, sampleIntervalMs = 5000, load = () => loadavg()[0]! } = options;
    if (!(typeof maxLoad === 'number' && maxLoad > 0 && Number.isFinite(maxLoad))) {
      throw new InvalidOptionError(`Expected \`maxLoad\` to be a finite number > 0, got \`${String(maxLoad)}\` (${typeof maxLoad})`);
    }
    // A period setInterval can hold: past 2^31-1 ms Node fires it every millisecond instead.
    if (!(Number.isFinite(sampleIntervalMs) && sampleIntervalMs > 0 && sampleIntervalMs <= MAX_TIMER_DELAY_MS)) {
      throw new InvalidOptionError(`Expected \`sampleIntervalMs\` to be a finite number > 0 and <= ${MAX_TIMER_DELAY_MS}, got \`${String(sampleIntervalMs)}\``);
    }
    this.#inner = inner;
    this.#maxLoad = maxLoad;
    this.#sampleIntervalMs = sampleIntervalMs;
    this.#load = load;
    this.#current = load();
  }

  get size(): number {
    return this.#inner.size;
  }

  get maxTasks(): number {
    return this.#inner.maxTasks;
  }

  /** The load average seen at the start of the last tick. */
  get load(): number {
    return this.#current;
  }

  startTick(): void {
    this.#current = this.#load();
    this.#inner.startTick();
  }

  hasCapacity(): boolean {
    if (!this.#inner.hasCapacity()) return false;
    if (this.#current < this.#maxLoad) return true;
    this.#watchLoad();
    return false;
  }

  /** The load, when it alone keeps a task from starting; else the inner manager's reason, if any. */
  holdReason(): ManagerHold | undefined {
    if (!this.#inner.hasCapacity()) return this.#inner.holdReason?.();
    if (this.#current < this.#maxLoad) return undefined;
    return { reason: 'load', load: Math.round(this.#current * 100) / 100, maxLoad: this.#maxLoad };
  }

  startTask(id: string, request: unknown, input?: TaskInput): TaskProcess | void {
    return this.#inner.startTask(id, request, input);
  }

  reserve(slots: number): void {
    this.#inner.reserve?.(slots);
  }

  killNow(): void {
    this.#inner.killNow?.();
  }

  terminateTask(id: string): void {
    this.#inner.terminateTask(id);
  }

  isGone(id: string): boolean {
    return this.#inner.isGone?.(id) ?? true;
  }

  reap(): Iterable<[string, TaskOutcome]> {
    return this.#inner.reap();
  }

  /** The inner manager's answer: without it a run timeout would kill a task that ended in time. */
  hasEnded(id: string): boolean {
    return this.#inner.hasEnded?.(id) ?? false;
  }

  setWakeHandler(wake: () => void): void {
    this.#wake = wake;
    this.#inner.setWakeHandler(wake);
  }

  setEventHandler(onEvent: (event: TaskManagerEvent) => void): void {
    this.#inner.setEventHandler?.(onEvent);
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#inner.close();
  }

  /** Work is held back by load: look again until it drops, then wake the server once. */
  #watchLoad(): void {
    this.#timer ??= setInterval(() => {
      if (this.#load() >= this.#maxLoad) return;
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#wake();
    }, this.#sampleIntervalMs);
  }
}
