/**
 * Child processes for the crash torture: spawn a compiled torture script with
 * its JSON configuration, see its stdout lines, SIGKILL it by its own pid
 * (never by name), and know when it has exited and been reaped (a server's
 * lock is only stale once its pid is gone). Plus a poll-until-true with a
 * deadline, the only way the harness waits for something to happen.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class TortureProcess {
  readonly pid: number;
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #listeners = new Set<() => void>();
  #exit: Exit | undefined;
  #stderr = '';

  /** Spawns `bench/<script>.js` (next to this module) with `config` as JSON in argv[2]. */
  constructor(script: string, config: object) {
    this.#child = spawn(process.execPath, [join(HERE, `${script}.js`), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    if (this.#child.pid === undefined) throw new Error(`could not spawn ${script}`);
    this.pid = this.#child.pid;
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      this.#lines.push(line);
      this.#notify();
    });
    this.#child.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    this.#child.stdin!.on('error', () => {}); // EPIPE once it is gone
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
        this.#notify();
      });
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  get exit(): Exit | undefined {
    return this.#exit;
  }

  /** Whether it died of SIGKILL (only the harness sends one). */
  get killed(): boolean {
    return this.#exit?.signal === 'SIGKILL';
  }

  /** Whether it has printed `line`. */
  said(line: string): boolean {
    return this.#lines.includes(line);
  }

  /** Resolves true once it prints `line`; false if it exits first or `timeoutMs` passes. */
  async saysWithin(line: string, timeoutMs: number): Promise<boolean> {
    if (this.said(line)) return true;
    return new Promise<boolean>((resolve) => {
      const done = (value: boolean): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve(value);
      };
      const check = (): void => {
        if (this.said(line)) done(true);
        else if (this.#exit !== undefined) done(false);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  /** SIGKILLs it (if it has not exited yet) and resolves once it is reaped. */
  async kill(): Promise<Exit> {
    if (this.#exit === undefined) this.#child.kill('SIGKILL');
    return this.exited;
  }

  /** Asks it to stop (SIGTERM) and resolves once it has exited. */
  async terminate(): Promise<Exit> {
    if (this.#exit === undefined) this.#child.kill('SIGTERM');
    return this.exited;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Polls `check` every few ms until it is true; false once `timeoutMs` has passed. */
export async function pollUntil(check: () => boolean, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
