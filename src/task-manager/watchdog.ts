/**
 * Makes tasks die with the process that started them, however it dies
 * (`kill -9`, the OOM killer): one small `/bin/sh` process per task manager
 * reads `+PGID` and `-PGID` lines on its stdin, and when that input ends (the
 * pipe's only writer, this process, is gone) it SIGKILLs every process group
 * still registered, the whole group: the task and whatever it started in it.
 *
 * It replaces a `setpriv --pdeathsig SIGKILL` exec in front of each command
 * (about 1.7 ms per task, as much again as spawning the command itself, and it
 * reached only the group's leader). The watchdog is detached (its own process
 * group and session) and ignores SIGINT, SIGTERM and SIGHUP, so a signal meant
 * for the server's group or terminal leaves it to do its work; a next server
 * still kills what a watchdog could not (`running/<id>.proc`).
 * Invariants: the parent keeps the registered set, so a watchdog that died (or
 * could not start: EAGAIN, EMFILE) is replaced a second later, or at the next
 * task, and told every group still running; a failure here never fails a task.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { commandLine, listProcesses } from './process-table.js';

/**
 * The watchdog, in POSIX sh (dash, busybox, bash). Each registered group is a
 * variable `p<pgid>` (set and unset in constant time, whatever the number of
 * tasks); a line that is not `+` or `-` and a pgid above 1 is ignored, and
 * nothing is expanded as a file name (`set -f`). At end of input it kills the
 * groups still set. It runs with an empty environment, so no inherited
 * variable looks like a group.
 */
const SCRIPT = `set -f
trap '' INT TERM HUP
while read -r line; do
  g=\${line#?}
  case $g in ''|*[!0-9]*|0|1) continue ;; esac
  case $line in
    +*) eval "p$g=1" ;;
    -*) unset "p$g" ;;
  esac
done
set | while IFS='=' read -r name value; do
  case $name in p*) ;; *) continue ;; esac
  g=\${name#p}
  case $g in ''|*[!0-9]*|0|1) continue ;; esac
  kill -s KILL -- "-$g" 2>/dev/null
done
`;

/** How long after a watchdog died (or could not start) a new one is started, while groups are registered. */
const RESTART_MS = 1000;

/** Its $0, so that `ps` (and a test) can tell it from a task. */
export const WATCHDOG_NAME = 'wq-watchdog';

export class GroupWatchdog {
  readonly #groups = new Set<number>();
  #child: ChildProcess | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Lines for the watchdog not written yet (see #send). */
  #unsent = '';

  /** Registers a process group (its leader's pid) to be killed if this process dies. */
  watch(pgid: number): void {
    this.#groups.add(pgid);
    if (this.#closed) return;
    try {
      if (this.#child === undefined) this.#start();
      else this.#send(`+${pgid}\n`);
    } catch {
      this.#restartLater(); // never fails the task: a next server's recovery is the backstop
    }
  }

  /** The group is gone (or no longer this process's to kill). */
  release(pgid: number): void {
    if (!this.#groups.delete(pgid)) return;
    if (this.#child !== undefined) this.#send(`-${pgid}\n`);
  }

  /** The watchdog's pid, if one runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Lets the watchdog go without it killing anything: every group is released first. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined) return;
    // Every group released, then the end of input: it kills nothing.
    const lines = this.#unsent + [...this.#groups].map((g) => `-${g}\n`).join('');
    this.#unsent = '';
    this.#groups.clear();
    child.stdin?.end(lines);
  }

  #start(): void {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', SCRIPT, WATCHDOG_NAME], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env: {} });
    } catch {
      return this.#restartLater(); // EAGAIN, ENOMEM … thrown at once
    }
    // EMFILE, ENFILE come as an 'error' event, with no pipe.
    child.once('error', () => this.#gone(child));
    child.once('exit', () => this.#gone(child));
    if (child.stdin === null) return;
    this.#child = child;
    child.stdin.on('error', () => this.#gone(child)); // EPIPE: it died
    child.unref(); // it must not keep this process alive, nor wait for it
    (child.stdin as Socket).unref();
    if (this.#groups.size > 0) this.#send([...this.#groups].map((g) => `+${g}\n`).join(''));
  }

  /** A watchdog died or never started: the groups still registered are told to a new one, soon. */
  #gone(child: ChildProcess): void {
    if (this.#child === child) this.#child = undefined;
    this.#restartLater();
  }

  #restartLater(): void {
    if (this.#closed || this.#restartTimer !== undefined || this.#child !== undefined || this.#groups.size === 0) return;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#closed && this.#child === undefined && this.#groups.size > 0) this.#start();
    }, RESTART_MS);
    this.#restartTimer.unref();
  }

  /**
   * Lines written in one synchronous stretch (a tick that starts or ends many
   * tasks) go out as one write, at its end: the pipe is a socket pair, where
   * each write takes a buffer of its own, and thousands of tiny writes at once
   * would fill it and leave lines waiting in this process.
   */
  #send(lines: string): void {
    if (this.#child === undefined) return;
    if (this.#unsent === '') queueMicrotask(() => this.#flush());
    this.#unsent += lines;
  }

  #flush(): void {
    const lines = this.#unsent;
    this.#unsent = '';
    this.#child?.stdin?.write(lines);
  }
}

/**
 * The pids of the live watchdogs process `pid` started (its children named
 * WATCHDOG_NAME), from /proc; for diagnostics and for tests that must kill a
 * server together with its watchdog.
 */
export function watchdogsOf(pid: number): number[] {
  return listProcesses()
    .filter((p) => p.ppid === pid && !p.zombie && commandLine(p.pid)?.includes(WATCHDOG_NAME) === true)
    .map((p) => p.pid);
}
