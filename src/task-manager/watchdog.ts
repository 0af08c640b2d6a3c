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
 * Invariants: the parent keeps the registered set, so a watchdog that died is
 * replaced at the next task and told every group still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

/**
 * The watchdog, in POSIX sh (dash, busybox, bash): `groups` is a
 * space-delimited set of process group ids; at end of input each is killed.
 */
const SCRIPT = `trap '' INT TERM HUP
groups=' '
while read -r line; do
  case $line in
    +*) groups="$groups\${line#+} " ;;
    -*) g=\${line#-}; case $groups in *" $g "*) groups="\${groups%% $g *} \${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
`;

/** Its $0, so that `ps` (and a test) can tell it from a task. */
export const WATCHDOG_NAME = 'wq-watchdog';

export class GroupWatchdog {
  readonly #groups = new Set<number>();
  #child: ChildProcess | undefined;
  #closed = false;

  /** Registers a process group (its leader's pid) to be killed if this process dies. */
  watch(pgid: number): void {
    this.#groups.add(pgid);
    if (this.#closed) return;
    if (this.#child === undefined) this.#start();
    else this.#send(`+${pgid}\n`);
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
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined) return;
    for (const pgid of this.#groups) child.stdin?.write(`-${pgid}\n`);
    this.#groups.clear();
    child.stdin?.end();
  }

  #start(): void {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', SCRIPT, WATCHDOG_NAME], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    } catch {
      return; // EMFILE, EAGAIN …: tried again at the next task; a next server's recovery is the backstop meanwhile
    }
    this.#child = child;
    const gone = (): void => {
      if (this.#child === child) this.#child = undefined; // replaced at the next watch()
    };
    child.once('error', gone);
    child.once('exit', gone);
    child.stdin!.on('error', gone); // EPIPE: it died
    child.unref(); // it must not keep this process alive, nor wait for it
    (child.stdin as Socket | null)?.unref();
    if (this.#groups.size > 0) this.#send([...this.#groups].map((g) => `+${g}\n`).join(''));
  }

  #send(lines: string): void {
    this.#child?.stdin?.write(lines);
  }
}

/**
 * The pids of the watchdogs process `pid` started (its children named
 * WATCHDOG_NAME), from /proc; for diagnostics and for tests that must kill a
 * server together with its watchdog.
 */
export function watchdogsOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').includes(WATCHDOG_NAME)) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
}
