/**
 * Runs each request through an async function in this process. For tests and
 * for embedding: termination aborts the task's AbortSignal and forgets it, but a
 * function that ignores its signal keeps running (it cannot be killed).
 */
import { InvalidOptionError, serializeError } from '../errors.js';
import type { TaskInput } from '../task-input.js';
import type { TaskManager, TaskOutcome } from './types.js';

/**
 * What a handler gets besides the request's body. `env`, `replaceEnv` and
 * `stdin` are the request's (`wq enqueue --env`, `--env-all`, `--stdin`;
 * EnqueueOptions), when it carries them: data, like the body, for the handler
 * to validate and use; the handler's own process environment and stdin are
 * the server's.
 */
export interface TaskContext extends TaskInput {
  /** The request's id. */
  id: string;
  /** Aborted when the request is aborted or the server shuts down. */
  signal: AbortSignal;
}

export type TaskHandler = (request: any, context: TaskContext) => unknown;

export interface InProcessTaskManagerOptions {
  /** Tasks at once. @default 1 */
  maxTasks?: number;
}

export class InProcessTaskManager implements TaskManager {
  readonly maxTasks: number;
  readonly #handler: TaskHandler;
  readonly #running = new Map<string, AbortController>();
  #finished: Array<[string, TaskOutcome]> = [];
  #wake: () => void = () => {};

  constructor(handler: TaskHandler, options: InProcessTaskManagerOptions = {}) {
    this.#handler = handler;
    this.maxTasks = options.maxTasks ?? 1;
    if (!(Number.isInteger(this.maxTasks) && this.maxTasks >= 0)) {
      throw new InvalidOptionError(`Expected \`maxTasks\` to be an integer >= 0, got \`${options.maxTasks}\``);
    }
  }

  get size(): number {
    return this.#running.size;
  }

  startTick(): void {}

  hasCapacity(): boolean {
    return this.#running.size < this.maxTasks;
  }

  startTask(id: string, request: unknown, input: TaskInput = {}): void {
    const controller = new AbortController();
    this.#running.set(id, controller);
    const settle = (outcome: TaskOutcome): void => {
      if (this.#running.get(id) !== controller) return; // terminated meanwhile: drop the outcome
      this.#running.delete(id);
      this.#finished.push([id, outcome]);
      this.#wake();
    };
    let pending: Promise<unknown>;
    try {
      pending = Promise.resolve(this.#handler(request, { ...input, id, signal: controller.signal }));
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (value) => settle({ ok: true, value }),
      (err: unknown) => settle({ ok: false, error: serializeError(err) }),
    );
  }

  terminateTask(id: string): void {
    const controller = this.#running.get(id);
    if (controller === undefined) return;
    this.#running.delete(id);
    controller.abort(new Error(`request ${id} was aborted`));
    this.#wake();
  }

  reap(): Iterable<[string, TaskOutcome]> {
    const done = this.#finished;
    this.#finished = [];
    return done;
  }

  setWakeHandler(wake: () => void): void {
    this.#wake = wake;
  }

  async close(): Promise<void> {
    for (const id of [...this.#running.keys()]) this.terminateTask(id);
  }
}
