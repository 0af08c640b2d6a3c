/**
 * The seam between the server and whatever runs the work. The server calls the
 * five verbs from its single thread, in this order each tick: startTick, reap,
 * terminateTask (for aborts), then hasCapacity/startTask while there is room.
 */
import type { SerializedError } from '../errors.js';
import type { ManagerHold } from '../protocol.js';
import type { TaskInput } from '../task-input.js';

/** How a task ended. `error` is a task failure, carried to the waiting client. */
export type TaskOutcome = ({ ok: true; value: unknown } | { ok: false; error: SerializedError }) & {
  /** The task wrote logs/<id>.* (command output); they go with the result. */
  logs?: boolean;
};

/**
 * Something a manager reports besides outcomes, for logs and metrics; it needs
 * no answer. `worker-crashed`: a worker process died on its own (not killed by
 * terminateTask or close); `taskId` is the request it was running, if any,
 * which also gets an error outcome through reap(). `worker-output`: one line a
 * worker process wrote to its stdout or stderr (a handler's console.log), with
 * the request it was running then, or had run last.
 */
export type TaskManagerEvent =
  | {
      type: 'worker-crashed';
      pid: number | undefined;
      taskId: string | undefined;
      exitCode: number | null;
      signal: string | null;
    }
  | {
      type: 'worker-output';
      pid: number | undefined;
      taskId: string | undefined;
      stream: 'stdout' | 'stderr';
      line: string;
    };

/**
 * The process a task runs in, as startTask reports it: `pid` leads its own
 * process group (pgid = pid), and killing that group stops the task. The
 * server records it (docs/protocol.md, `running/<id>.proc`) so that the next
 * server can kill what a dead one left running before it runs the request again.
 */
export interface TaskProcess {
  pid: number;
  /**
   * When the process started, in clock ticks since boot (field 22 of
   * /proc/<pid>/stat), if the manager knows it: a pool's long-lived worker is
   * read once, not at each task. The server reads it itself otherwise.
   */
  startTicks?: number;
}

export interface TaskManager {
  /** Tasks started and neither reaped nor terminated yet (the ancestor's `len(manager)`). */
  readonly size: number;
  /** Maximum tasks at once, for status and metrics (Infinity if unbounded). */
  readonly maxTasks: number;
  /** Called at the start of every server tick, e.g. to sample load. */
  startTick(): void;
  /** Whether one more task may start now. */
  hasCapacity(): boolean;
  /**
   * Starts a task. Must not block; a synchronous throw fails just this request
   * (and must leave nothing running). Returns the task's process group when it
   * runs in a process of its own (command, handler worker); nothing in-process.
   * `input` is what the request carries besides its body (environment
   * variables, standard input), absent when nothing: a manager that cannot give
   * the task something in it must throw rather than run the task without it.
   */
  startTask(id: string, request: unknown, input?: TaskInput): TaskProcess | void;
  /**
   * Stops a task for good: the work is really killed, its outcome is never
   * reaped, and its capacity is freed once it is gone.
   */
  terminateTask(id: string): void;
  /** Outcomes of tasks that finished since the last call. */
  reap(): Iterable<[id: string, outcome: TaskOutcome]>;
  /** Registers the callback the manager calls when it has something to reap or capacity freed. */
  setWakeHandler(wake: () => void): void;
  /**
   * Optional: whether a task has already ended although its outcome is not
   * ready to reap yet (a command's output still draining). The server never
   * times out a task that has ended: its own outcome follows. A manager whose
   * outcomes are ready the moment a task ends need not implement it; one that
   * wraps another (LoadAwareTaskManager) must pass it on.
   */
  hasEnded?(id: string): boolean;
  /**
   * Optional: when hasCapacity() is false for a reason other than every slot
   * being taken (LoadAwareTaskManager: the load average), that reason. The
   * server publishes it for `wq status` (docs/protocol.md, *Server state*);
   * without it, no capacity reads as full capacity.
   */
  holdReason?(): ManagerHold | undefined;
  /**
   * Optional: after terminateTask(id), whether every process of that task is
   * gone (its capacity is then free). A manager without processes need not
   * implement it: its tasks are gone at once. A server that lets others run
   * work as soon as one task is gone (a queue on Redis, under a global limit)
   * waits for it.
   */
  isGone?(id: string): boolean;
  /** Optional: registers the callback the manager calls with TaskManagerEvents. */
  setEventHandler?(onEvent: (event: TaskManagerEvent) => void): void;
  /**
   * Optional: slots taken by processes this manager does not run (what a dead
   * server left running and could not be killed yet): hasCapacity() counts
   * them as taken. Managers without processes need not implement it.
   */
  reserve?(slots: number): void;
  /**
   * Optional: SIGKILLs every task's process group at once, synchronously, for
   * a process about to exit (a second SIGTERM); the tasks' requests stay in
   * running/ and run again at the next start.
   */
  killNow?(): void;
  /** Stops everything and frees resources (children, timers). */
  close(): Promise<void>;
}
