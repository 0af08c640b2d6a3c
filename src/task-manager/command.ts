/**
 * Runs a command per request, without a shell, in its own process group.
 * The request is `{ argv: string[], cwd?: string }`; with a fixed `command`
 * prefix (`wq serve --exec`), the request's argv is appended to it. The result
 * is `{ exitCode, signal, stdout, stderr, order? }`, each stream's first bytes
 * inline, with the order in which they came (output-order.ts); the whole output
 * is in logs/ (see output-budget.ts for its limit). A request may ask for its
 * stderr joined to its stdout (`2>&1`), which keeps their order exactly.
 * A command's environment is the server's with PWD set to its directory, plus
 * the variables its request carries (task-input.ts); its stdin is what the
 * request carries, else /dev/null. When it exits, what it left running in its
 * process group is killed, so that a slot is free only once its work is done.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { OutputOrder } from './output-order.js';
import { logWriteFailure, OutputBudget, outputLimitFailure } from './output-budget.js';
import { CappedBuffer, spawnFailure, TaskLogs } from './command-output.js';
import { CommandError, resolveCommandOptions, type CommandResult, type CommandTaskManagerOptions, type ResolvedCommandOptions } from './command-types.js';
import { cannotRun } from './launcher.js';
import { GroupWatchdog } from './watchdog.js';
import { commandEnvironment, refusedInput, type TaskInput } from '../task-input.js';
import { readCommandRequest } from './command-request.js';
import { hasExited, killGroup, signalGroup, signalGroupIfAllowed, type GroupKill } from './process-group.js';
import type { SerializedError } from '../errors.js';
import type { TaskManager, TaskOutcome, TaskProcess } from './types.js';

export { CommandError, resolveCommandOptions, type CommandRequest, type CommandResult, type CommandTaskManagerOptions, type ResolvedCommandOptions } from './command-types.js';

/**
 * Runs the command with its stderr joined to its stdout (`2>&1`): node cannot
 * give a child one pipe as two descriptors, so sh does it and execs the
 * command in its own place (same pid, same process group). The argv is passed
 * as sh's positional parameters, never parsed by it.
 */
const JOIN_STDERR = ['/bin/sh', '-c', 'exec "$@" 2>&1', 'sh'];

/** How long to wait for a command's pipes to close after it exits (a background child may hold them). */
const PIPE_DRAIN_MS = 1000;

interface Running {
  child: ChildProcess;
  killing: GroupKill | undefined;
  /** Set when terminated: its outcome is dropped. */
  terminated: boolean;
  /** Set when stopped for its output (past the limit, or its log unwritable): the outcome is this error. */
  outputFailure?: SerializedError;
  /** Set when the command exited (or never started), before its outcome is ready: its output may still be draining. */
  ended: boolean;
}

export class CommandTaskManager implements TaskManager {
  readonly maxTasks: number;
  readonly #o: ResolvedCommandOptions;
  readonly #running = new Map<string, Running>();
  /** Terminated commands whose group has not exited yet: they still hold capacity. */
  readonly #dying = new Set<Running>();
  /** The terminated tasks of #dying, by request id (isGone()). */
  readonly #dyingIds = new Map<string, Running>();
  /** Slots held by a dead server's tasks that are still alive (see reserve()). */
  #reserved = 0;
  /** Kills the commands' process groups if this process dies (dieWithServer). */
  readonly #watchdog: GroupWatchdog | undefined;
  #finished: Array<[string, TaskOutcome]> = [];
  #wake: () => void = () => {};

  constructor(options: CommandTaskManagerOptions = {}) {
    this.#o = resolveCommandOptions(options);
    this.maxTasks = this.#o.maxTasks;
    this.#watchdog = this.#o.dieWithServer ? new GroupWatchdog() : undefined;
  }

  get size(): number {
    return this.#running.size;
  }

  startTick(): void {}

  hasCapacity(): boolean {
    return this.#running.size + this.#dying.size + this.#reserved < this.#o.maxTasks;
  }

  reserve(slots: number): void {
    this.#reserved = slots;
  }

  killNow(): void {
    for (const task of [...this.#running.values(), ...this.#dying]) if (task.child.pid !== undefined) signalGroupIfAllowed(task.child.pid, 'SIGKILL');
  }

  startTask(id: string, request: unknown, input: TaskInput = {}): TaskProcess | undefined {
    const { argv, cwd, env, joined } = this.#commandLine(request, input);
    // What can fail without a process fails first (a throw fails just this request, with nothing running).
    let stopForOutput = (_error: SerializedError): void => {};
    const logs = this.#o.logDir === '' ? undefined : new TaskLogs(this.#o.logDir, id, (err) => stopForOutput(logWriteFailure(err)));
    const line = [...(joined ? JOIN_STDERR : []), ...argv];
    let child: ChildProcess;
    try {
      child = spawn(line[0]!, line.slice(1), {
        cwd,
        env,
        detached: true, // own process group: terminate reaches everything it started
        stdio: [input.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      });
    } catch (err) {
      void logs?.close().then(() => logs.remove());
      throw new CommandError(`cannot start ${JSON.stringify(argv[0])}: ${spawnFailure(err as NodeJS.ErrnoException)}`, (err as NodeJS.ErrnoException).code ?? 'ERR_COMMAND');
    }
    const task: Running = { child, killing: undefined, terminated: false, ended: false };
    this.#running.set(id, task);
    stopForOutput = (error: SerializedError): void => this.#stopForOutput(task, error);
    let settled = false;
    const settle = (outcome: TaskOutcome): void => {
      if (settled) return;
      settled = true;
      // The logs are complete on disk before the result can appear.
      void (logs?.close() ?? Promise.resolve()).then(() => {
        if (task.terminated) return;
        if (task.outputFailure !== undefined) {
          logs?.remove(); // partial output, and the disk space it holds, go with the failure
          outcome = { ok: false, error: task.outputFailure };
        } else if (logs !== undefined) {
          outcome.logs = true;
        }
        this.#running.delete(id);
        this.#finished.push([id, outcome]);
        this.#wake();
      });
    };
    // Attached first: spawn(2) failing (EMFILE, EAGAIN, ENOMEM …) is reported here, with no process and no pipes.
    child.on('error', (err: NodeJS.ErrnoException) => {
      task.ended = true;
      this.#onGone(task);
      settle({ ok: false, error: { name: 'CommandError', message: `cannot start ${JSON.stringify(argv[0])}: ${spawnFailure(err)}`, code: err.code ?? 'ERR_COMMAND' } });
    });
    if (child.pid === undefined) return undefined;
    this.#watchdog?.watch(child.pid);
    logs?.writePid(child.pid);
    if (child.stdin) {
      // A command that exits (or is killed) before reading all of it closes the pipe: EPIPE, which is its business.
      child.stdin.on('error', () => {});
      child.stdin.end(input.stdin);
    }
    const stdout = new CappedBuffer(this.#o.inlineOutputBytes);
    const stderr = new CappedBuffer(this.#o.inlineOutputBytes);
    const budget = new OutputBudget(this.#o.maxOutputBytes);
    const order = new OutputOrder();
    const capture = (name: 'stdout' | 'stderr', inline: CappedBuffer) => (chunk: Buffer) => {
      if (task.outputFailure !== undefined) return;
      if (!budget.take(chunk.length)) return stopForOutput(outputLimitFailure(this.#o.maxOutputBytes));
      inline.push(chunk);
      order.push(name, chunk.length);
      logs?.write(name, chunk);
    };
    child.stdout!.on('data', capture('stdout', stdout));
    child.stderr!.on('data', capture('stderr', stderr));
    child.on('exit', (exitCode, signal) => {
      task.ended = true;
      this.#onGone(task);
      const finish = (): void => {
        const result: CommandResult = { exitCode, signal, stdout: stdout.bytes(), stderr: stderr.bytes() };
        if (stdout.dropped > 0) result.stdoutDropped = stdout.dropped;
        if (stderr.dropped > 0) result.stderrDropped = stderr.dropped;
        const runs = order.runs();
        if (runs !== undefined) result.order = runs;
        settle({ ok: true, value: result });
      };
      // Wait for the pipes to drain, but not for a background child that keeps them open.
      const timer = setTimeout(() => {
        child.stdin?.destroy();
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish();
      }, PIPE_DRAIN_MS);
      child.once('close', () => {
        clearTimeout(timer);
        finish();
      });
    });
    return { pid: child.pid };
  }

  terminateTask(id: string): void {
    const task = this.#running.get(id);
    if (task === undefined) return;
    this.#running.delete(id);
    task.terminated = true;
    if (task.child.pid === undefined || task.child.exitCode !== null || task.child.signalCode !== null) return;
    this.#dying.add(task);
    this.#dyingIds.set(id, task);
    task.killing = killGroup(task.child.pid, this.#o.killGraceMs);
  }

  isGone(id: string): boolean {
    return !this.#dyingIds.has(id);
  }

  /**
   * Whether a command has ended though its outcome is not ready: it exited and
   * its pipes are draining, or it is a zombie whose exit the event loop has not
   * read yet (the server was stopped, e.g. by SIGSTOP, while it ended).
   */
  hasEnded(id: string): boolean {
    const task = this.#running.get(id);
    if (task === undefined) return false;
    return task.ended || (task.child.pid !== undefined && hasExited(task.child.pid));
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
    const all = [...this.#running.values(), ...this.#dying];
    for (const id of [...this.#running.keys()]) this.terminateTask(id);
    await Promise.all(
      all.map((task) => new Promise<void>((resolve) => (task.child.exitCode !== null || task.child.signalCode !== null ? resolve() : task.child.once('exit', () => resolve())))),
    );
    this.#watchdog?.close();
  }

  /**
   * Stops a command for its output (past the limit, or its log unwritable):
   * its group is killed like a terminated one's, but its request gets `error`
   * as its outcome. The first cause wins.
   */
  #stopForOutput(task: Running, error: SerializedError): void {
    if (task.outputFailure !== undefined || task.terminated) return;
    task.outputFailure = error;
    const { pid } = task.child;
    if (pid === undefined || task.child.exitCode !== null || task.child.signalCode !== null || task.killing !== undefined) return;
    task.killing = killGroup(pid, this.#o.killGraceMs);
  }

  /**
   * The command's own process is gone: sweep its process group, so nothing it
   * left in the background keeps working outside the queue's capacity. (A
   * command that must leave a daemon behind starts it in a new session: setsid.)
   */
  #onGone(task: Running): void {
    if (task.killing !== undefined) task.killing.leaderExited();
    else if (task.child.pid !== undefined) signalGroup(task.child.pid, 'SIGKILL');
    // (Both SIGKILL the whole group: nothing of it is left for the watchdog.)
    if (task.child.pid !== undefined) this.#watchdog?.release(task.child.pid);
    if (this.#dying.delete(task)) {
      for (const [id, dying] of this.#dyingIds) if (dying === task) this.#dyingIds.delete(id);
      this.#wake();
    }
  }

  #commandLine(request: unknown, input: TaskInput): { argv: string[]; cwd: string | undefined; env: Record<string, string>; joined: boolean } {
    const line = readCommandRequest(request, this.#o.command);
    if ('problem' in line) throw new CommandError(line.problem, line.code);
    const { argv } = line;
    let cwd: string | undefined;
    if (line.cwd !== undefined) {
      if (typeof line.cwd !== 'string' || !isDirectory(line.cwd)) {
        throw new CommandError(`the request's working directory ${JSON.stringify(line.cwd)} does not exist on the server`, 'ERR_BAD_CWD');
      }
      cwd = line.cwd;
    }
    const refused = refusedInput(input, this.#o.acceptEnv);
    if (refused !== undefined) throw new CommandError(refused, 'ERR_ENV_REFUSED');
    // The command is looked up in its own PATH, as its shell would.
    const env = commandEnvironment(this.#o.env, input, cwd ?? process.cwd());
    const why = cannotRun(argv[0]!, env.PATH, cwd ?? process.cwd());
    if (why !== undefined) throw new CommandError(`cannot run ${JSON.stringify(argv[0])}: ${why === 'ENOENT' ? 'command not found' : 'permission denied'}`, why);
    // (A program whose name starts with '-' would read as an option of a bash's exec: it keeps two streams.)
    return { argv, cwd, env, joined: line.stderrToStdout === true && !argv[0]!.startsWith('-') };
  }
}

/** Whether a request's working directory is one (outside the spool: not spool/fs.ts's business). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
