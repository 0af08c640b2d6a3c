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
import { statSync, type WriteStream } from 'node:fs';
import { InvalidOptionError, WorkQueueError } from '../errors.js';
import { OutputOrder } from './output-order.js';
import { DEFAULT_INLINE_OUTPUT_BYTES, DEFAULT_MAX_OUTPUT_BYTES, logWriteFailure, MAX_OUTPUT_LIMIT_BYTES, OutputBudget, outputLimitFailure } from './output-budget.js';
import { assertDurationMs, stripUndefined } from '../options.js';
import { createOutputLogs, OutputLogError, removeTaskLogs, writePidLog, type OutputStream } from '../spool/logs.js';
import { cannotRun, parentDeathPrefix } from './launcher.js';
import { badVariableName, commandEnvironment, refusedInput, type AcceptedVariables, type TaskInput } from '../task-input.js';
import { readCommandRequest } from './command-request.js';
import { hasExited, killGroup, signalGroup, signalGroupIfAllowed, type GroupKill } from './process-group.js';
import type { SerializedError } from '../errors.js';
import type { TaskManager, TaskOutcome, TaskProcess } from './types.js';

/** What a client sends to a command server. */
export interface CommandRequest {
  /** Program and arguments (appended to the server's `command` prefix, if any). */
  argv: string[];
  /** Working directory. @default the server's */
  cwd?: string;
  /**
   * Join the command's stderr to its stdout, as a shell's `2>&1` does: the
   * result's `stdout` then holds both, in the exact order they were written,
   * and `stderr` is empty. `wq enqueue --wait` asks for it when its own stdout
   * and stderr lead to the same file or terminal. @default false
   */
  stderrToStdout?: boolean;
}

/** What a command task returns. */
export interface CommandResult {
  /** Exit code, or null when killed by a signal. */
  exitCode: number | null;
  /** The signal's name (`'SIGKILL'`) when it was killed by one, else null. */
  signal: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /**
   * Bytes of the stream past the part carried inline (absent when it is all
   * there). A client that claims the result reads them from the request's log
   * and removes this field; if it is still set, the output was cut.
   */
  stdoutDropped?: number;
  stderrDropped?: number;
  /**
   * The order in which the server read the two streams, when both had output:
   * the lengths in bytes of alternating runs, stdout first (0 when stderr came
   * first), at most 4096 runs (MAX_ORDER_RUNS); bytes past the last run follow
   * as the rest of stdout, then the rest of stderr. Writes microseconds apart
   * may share a run (two pipes are read, not one): only `stderrToStdout` keeps
   * the order exactly.
   * @example
   * // echo 1; sleep 1; echo 2 >&2; sleep 1; echo 3  →  stdout '1
3
', stderr '2
', order [2, 2, 2]
   */
  order?: number[];
}

export interface CommandTaskManagerOptions {
  /** Commands at once. @default 1 */
  maxTasks?: number;
  /** A fixed program and leading arguments; each request's argv is appended. @default none: argv is the whole command */
  command?: string[];
  /** After SIGTERM, how long a terminated command's group has before SIGKILL. @default 2000 */
  killGraceMs?: number;
  /**
   * Output a command may write, stdout and stderr together, in bytes. Past it
   * the command is stopped (its process group killed) and its request fails
   * with `ERR_OUTPUT_LIMIT`. This bounds its logs in logs/ too. With `logDir`
   * at most 1073741824 (1 GiB, MAX_OUTPUT_LIMIT_BYTES), what a client can read back whole.
   * @default 67108864 (64 MiB)
   * @example maxOutputBytes: 10 * 1024 * 1024
   */
  maxOutputBytes?: number;
  /**
   * Output carried inline in the result, per stream, in bytes; the rest is
   * counted (`stdoutDropped`) and, with `logDir`, read by the client from the
   * log. @default 1048576 (1 MiB)
   */
  inlineOutputBytes?: number;
  /**
   * The server's environment, on which each command's is built: without its
   * OLDPWD, with PWD set to the command's directory, and with the variables
   * its request carries (see `acceptEnv`). @default process.env
   */
  env?: Record<string, string | undefined>;
  /**
   * Which of a request's variables (`EnqueueOptions.env`, `wq enqueue --env`)
   * its command may get: `'all'`, or a list of names. A fixed `command`
   * (`wq serve --exec`) is a boundary for whoever may file requests, and a
   * variable could cross it (LD_PRELOAD, PATH, BASH_ENV, or the command's own,
   * such as rsync's RSYNC_RSH), so with one a request may set only the listed
   * names, and not replace the whole environment; any other request fails
   * (`ERR_ENV_REFUSED`) without running.
   * @default 'all' without `command`; [] (none) with one
   * @example acceptEnv: ['MAKEFLAGS', 'LANG']
   */
  acceptEnv?: AcceptedVariables;
  /**
   * Write each command's output, as it comes, to `<logDir>/<id>.stdout` and
   * `.stderr` (up to `maxOutputBytes`), and its pid to `<id>.pid`, for `wq wait`
   * (the whole output), `--follow` and `wq status`. An output write that fails
   * stops the command and fails its request (`ERR_DISK_FULL` on a full disk,
   * else `ERR_OUTPUT_LOG`); the pid file is best effort. The spool's
   * `logs/` directory. @default no log files
   */
  logDir?: string;
  /**
   * Start each command through `setpriv --pdeathsig SIGKILL` (util-linux),
   * where it is installed, so that the command dies if the server does. It
   * costs one more exec per task (about 5 ms on a loaded 2-core machine).
   * @default true
   */
  dieWithServer?: boolean;
}

/** A command could not be started (not found, bad working directory, invalid request). */
export class CommandError extends WorkQueueError {
  constructor(message: string, code = 'ERR_COMMAND') {
    super(message, code);
  }
}

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
  readonly #o: Required<CommandTaskManagerOptions>;
  readonly #running = new Map<string, Running>();
  /** Terminated commands whose group has not exited yet: they still hold capacity. */
  readonly #dying = new Set<Running>();
  /** Slots held by a dead server's tasks that are still alive (see reserve()). */
  #reserved = 0;
  readonly #launcher: string[];
  #finished: Array<[string, TaskOutcome]> = [];
  #wake: () => void = () => {};

  constructor(options: CommandTaskManagerOptions = {}) {
    this.#o = {
      maxTasks: 1,
      command: [],
      acceptEnv: options.command !== undefined && options.command.length > 0 ? [] : 'all',
      killGraceMs: 2000,
      maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
      inlineOutputBytes: DEFAULT_INLINE_OUTPUT_BYTES,
      env: process.env,
      logDir: '',
      dieWithServer: true,
      ...stripUndefined(options),
    };
    if (!(Number.isInteger(this.#o.maxTasks) && this.#o.maxTasks >= 0)) {
      throw new InvalidOptionError(`Expected \`maxTasks\` to be an integer >= 0, got \`${String(options.maxTasks)}\``);
    }
    if (!Array.isArray(this.#o.command) || !this.#o.command.every((a) => typeof a === 'string')) {
      throw new InvalidOptionError('Expected `command` to be an array of strings');
    }
    const { acceptEnv } = this.#o;
    if (acceptEnv !== 'all' && !(Array.isArray(acceptEnv) && acceptEnv.every((name) => typeof name === 'string' && badVariableName(name) === undefined))) {
      throw new InvalidOptionError(`Expected \`acceptEnv\` to be 'all' or an array of variable names, got \`${String(acceptEnv)}\` (${typeof acceptEnv})`);
    }
    for (const key of ['maxOutputBytes', 'inlineOutputBytes'] as const) {
      const value = this.#o[key];
      if (!(typeof value === 'number' && (Number.isSafeInteger(value) || value === Infinity) && value >= 0)) {
        throw new InvalidOptionError(`Expected \`${key}\` to be an integer >= 0 (bytes), got \`${String(value)}\` (${typeof value})`);
      }
    }
    if (this.#o.logDir !== '' && this.#o.maxOutputBytes > MAX_OUTPUT_LIMIT_BYTES) {
      // With logs, a client reads the whole output back: it must fit in its memory.
      throw new InvalidOptionError(`Expected \`maxOutputBytes\` with \`logDir\` to be an integer >= 0 and <= ${MAX_OUTPUT_LIMIT_BYTES} (bytes), got \`${String(this.#o.maxOutputBytes)}\``);
    }
    assertDurationMs('killGraceMs', this.#o.killGraceMs); // terminateTask must not fail for want of a valid grace
    this.maxTasks = this.#o.maxTasks;
    this.#launcher = this.#o.dieWithServer ? parentDeathPrefix() : [];
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
    const line = [...this.#launcher, ...(joined ? JOIN_STDERR : []), ...argv];
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
    task.killing = killGroup(task.child.pid, this.#o.killGraceMs);
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
    if (this.#dying.delete(task)) this.#wake();
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

/**
 * A command's output files (spool/logs.ts). They are created before the
 * command is spawned: one that cannot be created (a non-empty directory
 * planted there, EMFILE) fails the request before anything runs. A write that
 * fails later (disk full) is reported once to `onError`, which stops the command.
 */
class TaskLogs {
  readonly #dir: string;
  readonly #id: string;
  readonly #streams: Record<OutputStream, WriteStream>;

  constructor(dir: string, id: string, onError: (err: Error) => void) {
    this.#dir = dir;
    this.#id = id;
    try {
      this.#streams = createOutputLogs(dir, id);
    } catch (err) {
      if (!(err instanceof OutputLogError)) throw err;
      const why = err.code === 'EEXIST' ? 'something that is not a file is in the way' : err.message;
      throw new CommandError(`cannot create the output log logs/${id}.${err.stream}: ${why}; the command was not started`, 'ERR_LOG_FILE');
    }
    let failed = false;
    for (const s of Object.values(this.#streams)) {
      s.on('error', (err) => {
        if (!failed) onError(err);
        failed = true;
      });
    }
  }

  /** Records the command's pid, for `wq status` and followers; best effort: the result does not depend on it. */
  writePid(pid: number): void {
    writePidLog(this.#dir, this.#id, pid);
  }

  write(stream: OutputStream, chunk: Buffer): void {
    if (this.#streams[stream].writable) this.#streams[stream].write(chunk);
  }

  /** Resolves once both files are closed, written through or failed. */
  close(): Promise<void> {
    const end = (s: WriteStream) =>
      new Promise<void>((resolve) => {
        if (s.closed) return resolve();
        s.once('close', () => resolve());
        if (!s.destroyed) s.end();
      });
    return Promise.all([end(this.#streams.stdout), end(this.#streams.stderr)]).then(() => {});
  }

  /** Removes the files (after close): a stopped command's partial output is not kept. */
  remove(): void {
    removeTaskLogs(this.#dir, this.#id);
  }
}

/** Why spawn(2) failed, for the client. */
function spawnFailure(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'command not found';
    case 'EMFILE':
    case 'ENFILE':
      return `the server has too many open files (${err.code}); the command was not started`;
    case 'EAGAIN':
      return 'the server may not start more processes now (EAGAIN); the command was not started';
    case 'ENOMEM':
      return 'out of memory (ENOMEM); the command was not started';
    default:
      return err.message;
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

/** Keeps the first `limit` bytes of a stream and counts the rest. */
class CappedBuffer {
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  dropped = 0;
  constructor(readonly limit: number) {}

  push(chunk: Buffer): void {
    const room = this.limit - this.#kept;
    if (room >= chunk.length) {
      this.#chunks.push(chunk);
      this.#kept += chunk.length;
    } else {
      if (room > 0) this.#chunks.push(chunk.subarray(0, room));
      this.#kept += Math.max(0, room);
      this.dropped += chunk.length - Math.max(0, room);
    }
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.#chunks);
  }
}
