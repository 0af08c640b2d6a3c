/**
 * Runs requests in N long-lived child processes that load a handler module
 * once. A handler is an ES module whose default export is
 * `(request, { id, signal, env?, replaceEnv?, stdin? }) => result | Promise<result>`
 * (TaskContext: a request's variables and stdin come as data).
 *
 * Each child leads its own process group. Terminating a task kills that group
 * (SIGTERM, then SIGKILL after `killGraceMs`) and starts a fresh child; the slot
 * counts against capacity until the old group is gone. A child that dies on its
 * own fails only the task it was running.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError, WorkQueueError, type SerializedError } from '../errors.js';
import { assertDurationMs, stripUndefined } from '../options.js';
import type { ChildMessage, ParentMessage } from './process-pool-messages.js';
import { parentDeathPrefix } from './launcher.js';
import { killGroup, signalGroup, signalGroupIfAllowed, type GroupKill } from './process-group.js';
import type { TaskInput } from '../task-input.js';
import type { TaskManager, TaskManagerEvent, TaskOutcome, TaskProcess } from './types.js';
import { OutputLines } from './output-lines.js';
import { readProcess } from './process-table.js';

/** What a pool without an event handler does with its workers' output: what an inherited stdout and stderr did. */
function passOutputThrough(event: TaskManagerEvent): void {
  if (event.type === 'worker-output') process[event.stream].write(`${event.line}\n`);
}

export interface ProcessPoolTaskManagerOptions {
  /** Path or URL of the handler module. */
  handler: string;
  /** Child processes, so tasks at once. @default 1 */
  size?: number;
  /** After SIGTERM, how long a terminated task's process group has before SIGKILL. @default 2000 */
  killGraceMs?: number;
  /** Environment of the children. @default process.env */
  env?: Record<string, string | undefined>;
  /** Extra Node options for the children (e.g. a loader). @default the parent's execArgv */
  execArgv?: string[];
  /**
   * Start each child through `setpriv --pdeathsig SIGKILL` (util-linux), where
   * it is installed, so that a busy child dies with the server even while its
   * handler keeps it from noticing its IPC channel close. @default true
   */
  dieWithServer?: boolean;
}

/** Thrown into the waiting client when a child dies while running its task. */
export class WorkerCrashedError extends WorkQueueError {
  constructor(message: string) {
    super(message, 'ERR_WORKER_CRASHED');
  }
}

/** The handler module could not be loaded (bad path, syntax error, no default export). */
export class HandlerLoadError extends WorkQueueError {
  constructor(handler: string, error: SerializedError) {
    super(`cannot load handler ${handler}: ${error.message}`, 'ERR_HANDLER_LOAD');
  }
}

interface Slot {
  child: ChildProcess;
  /** The request this child runs now. */
  taskId: string | undefined;
  /** The request it ran last: its output can arrive after its outcome, and a handler's timers outlive it. */
  lastTaskId: string | undefined;
  /** Being killed: not usable until its exit, then replaced. */
  killing: GroupKill | undefined;
  /** The task terminateTask() killed this worker for (isGone()). */
  killedTaskId?: string;
  spawnedAt: number;
  /** The child's start time in clock ticks (/proc), read at its first task: the same for every task it runs. */
  startTicks: number | undefined;
  /** Resolves once its stdout and stderr have ended (their last lines passed on). */
  outputEnded: Promise<unknown>;
}

/** How long close() waits, after the children exit, for the rest of their output (a process that left their group may hold the pipes). */
const OUTPUT_DRAIN_MS = 1000;

/** A child that dies this soon after its start is treated as a crash loop and respawned with a delay. */
const CRASH_LOOP_MS = 1000;

const WORKER_PATH = fileURLToPath(new URL(`./process-pool-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export class ProcessPoolTaskManager implements TaskManager {
  readonly maxTasks: number;
  readonly #o: Required<Omit<ProcessPoolTaskManagerOptions, 'execArgv'>> & { execArgv: string[] };
  /** Slots held by a dead server's tasks that are still alive (see reserve()). */
  #reserved = 0;
  readonly #slots = new Set<Slot>();
  #finished: Array<[string, TaskOutcome]> = [];
  #wake: () => void = () => {};
  /** Until a handler is set (a server sets one), a worker's output lines go to this process's own stdout and stderr. */
  #onEvent: (event: TaskManagerEvent) => void = passOutputThrough;
  #closing = false;
  #loadError: SerializedError | undefined;
  #crashes = 0;
  readonly #ready: Promise<void>;
  #resolveReady!: () => void;
  #rejectReady!: (err: Error) => void;

  constructor(options: ProcessPoolTaskManagerOptions) {
    this.#o = { size: 1, killGraceMs: 2000, env: process.env, execArgv: process.execArgv, dieWithServer: true, ...stripUndefined(options), handler: options.handler };
    if (typeof this.#o.handler !== 'string' || this.#o.handler === '') {
      throw new InvalidOptionError(`Expected \`handler\` to be a module path, got \`${String(options.handler)}\``);
    }
    if (!(Number.isInteger(this.#o.size) && this.#o.size >= 1)) {
      throw new InvalidOptionError(`Expected \`size\` to be an integer >= 1, got \`${String(options.size)}\``);
    }
    assertDurationMs('killGraceMs', this.#o.killGraceMs); // terminateTask must not fail for want of a valid grace
    this.maxTasks = this.#o.size;
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {}); // observed through ready()
    for (let i = 0; i < this.#o.size; i++) this.#spawn();
  }

  /** Resolves once the first child has loaded the handler; rejects with HandlerLoadError. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** How many children died on their own. */
  get crashes(): number {
    return this.#crashes;
  }

  get size(): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.taskId !== undefined) n++;
    return n;
  }

  startTick(): void {}

  hasCapacity(): boolean {
    if (this.#idleSlot() === undefined) return false;
    if (this.#reserved === 0) return true;
    let taken = 0;
    for (const slot of this.#slots) if (slot.taskId !== undefined || slot.killing !== undefined) taken++;
    return taken + this.#reserved < this.#o.size;
  }

  reserve(slots: number): void {
    this.#reserved = slots;
  }

  killNow(): void {
    for (const slot of this.#slots) if (slot.child.pid !== undefined) signalGroupIfAllowed(slot.child.pid, 'SIGKILL');
  }

  startTask(id: string, request: unknown, input?: TaskInput): TaskProcess | undefined {
    if (this.#loadError !== undefined) throw new HandlerLoadError(this.#o.handler, this.#loadError);
    const slot = this.#idleSlot();
    if (slot === undefined) throw new WorkQueueError('startTask called without capacity', 'ERR_NO_CAPACITY');
    const message: ParentMessage = { type: 'run', id, request, ...(input === undefined ? {} : { input }) };
    slot.child.send(message); // throws for a request that cannot be cloned: fails just this request
    slot.taskId = id;
    slot.lastTaskId = id;
    const pid = slot.child.pid;
    if (pid === undefined) return undefined;
    // (The child is ours and alive: its pid cannot be reused before we collect it.)
    slot.startTicks ??= readProcess(pid)?.startTicks;
    return slot.startTicks === undefined ? { pid } : { pid, startTicks: slot.startTicks };
  }

  terminateTask(id: string): void {
    for (const slot of this.#slots) {
      if (slot.taskId !== id) continue;
      slot.taskId = undefined;
      slot.killedTaskId = id;
      slot.killing = killGroup(slot.child.pid!, this.#o.killGraceMs);
    }
  }

  isGone(id: string): boolean {
    for (const slot of this.#slots) if (slot.killedTaskId === id) return false; // its worker is deleted from #slots once it exited
    return true;
  }

  reap(): Iterable<[string, TaskOutcome]> {
    const done = this.#finished;
    this.#finished = [];
    return done;
  }

  setWakeHandler(wake: () => void): void {
    this.#wake = wake;
  }

  setEventHandler(onEvent: (event: TaskManagerEvent) => void): void {
    this.#onEvent = onEvent;
  }

  async close(): Promise<void> {
    this.#closing = true;
    const outputs = [...this.#slots].map((slot) => slot.outputEnded);
    const exits = [...this.#slots].map(
      (slot) =>
        new Promise<void>((resolve) => {
          if (slot.child.exitCode !== null || slot.child.signalCode !== null) return resolve();
          slot.child.once('exit', () => resolve());
          slot.taskId = undefined;
          slot.killing ??= killGroup(slot.child.pid!, this.#o.killGraceMs);
        }),
    );
    await Promise.all(exits);
    // Their last lines, so that nothing they wrote is lost or logged after the caller closed its log.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(outputs), new Promise((resolve) => (timer = setTimeout(resolve, OUTPUT_DRAIN_MS)))]);
    clearTimeout(timer);
  }

  #idleSlot(): Slot | undefined {
    if (this.#closing) return undefined;
    for (const slot of this.#slots) if (slot.taskId === undefined && slot.killing === undefined && slot.child.connected) return slot;
    return undefined;
  }

  #spawn(): void {
    // Through setpriv, if it is there: fork() runs `execPath ...execArgv worker handler`, and setpriv execs Node in its place.
    const launcher = this.#o.dieWithServer ? parentDeathPrefix() : [];
    const child = fork(WORKER_PATH, [this.#o.handler], {
      detached: true, // own process group, so terminate reaches everything the handler started
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'], // read line by line: a handler's console.log goes to the server's log, tagged
      env: this.#o.env,
      ...(launcher.length === 0
        ? { execArgv: this.#o.execArgv }
        : { execPath: launcher[0]!, execArgv: [...launcher.slice(1), process.execPath, ...this.#o.execArgv] }),
    });
    const ended = (['stdout', 'stderr'] as const).map((stream) => {
      const lines = new OutputLines((line) => this.#onEvent({ type: 'worker-output', pid: child.pid, taskId: slot.taskId ?? slot.lastTaskId, stream, line }));
      child[stream]?.on('data', (chunk: Buffer) => lines.push(chunk));
      return new Promise<void>((resolve) => {
        child[stream]?.once('close', () => {
          lines.flush();
          resolve();
        });
      });
    });
    const slot: Slot = { child, taskId: undefined, lastTaskId: undefined, killing: undefined, spawnedAt: Date.now(), startTicks: undefined, outputEnded: Promise.all(ended) };
    this.#slots.add(slot);
    child.on('message', (message: ChildMessage) => this.#onMessage(slot, message));
    child.on('error', () => {}); // 'exit' follows and is handled there
    child.on('exit', (code, signal) => this.#onExit(slot, code, signal));
  }

  #onMessage(slot: Slot, message: ChildMessage): void {
    switch (message.type) {
      case 'ready':
        this.#resolveReady();
        this.#wake();
        break;
      case 'load-error':
        this.#loadError = message.error;
        this.#rejectReady(new HandlerLoadError(this.#o.handler, message.error));
        break;
      case 'done':
        if (slot.taskId !== message.id) return; // terminated meanwhile: drop it
        slot.taskId = undefined;
        this.#finished.push([message.id, message.ok ? { ok: true, value: message.value } : { ok: false, error: message.error }]);
        this.#wake();
        break;
    }
  }

  #onExit(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    this.#slots.delete(slot);
    if (slot.killing !== undefined) slot.killing.leaderExited();
    else signalGroup(slot.child.pid!, 'SIGKILL'); // sweep anything the dead child left in its group
    if (slot.killing === undefined && !this.#closing && this.#loadError === undefined) {
      // Died on its own, busy or idle: a crash (a kill or a failed handler load is not).
      this.#crashes++;
      this.#onEvent({ type: 'worker-crashed', pid: slot.child.pid, taskId: slot.taskId, exitCode: code, signal });
    }
    if (slot.taskId !== undefined) {
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      const error = new WorkerCrashedError(`the handler process (pid ${slot.child.pid}) ${how} while running request ${slot.taskId}`);
      this.#finished.push([slot.taskId, { ok: false, error: { name: error.name, message: error.message, code: error.code } }]);
    }
    if (this.#closing || this.#loadError !== undefined) return void this.#wake();
    const delay = Date.now() - slot.spawnedAt < CRASH_LOOP_MS && slot.killing === undefined ? CRASH_LOOP_MS : 0;
    setTimeout(() => {
      if (!this.#closing) this.#spawn();
      this.#wake();
    }, delay);
    this.#wake();
  }
}

