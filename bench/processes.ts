/**
 * The bench's server and client processes (server-process.ts, client-process.ts):
 * start them, wait until they are ready, collect their reports. `wrap` runs
 * each under another command (e.g. strace); `nodeArgs` passes Node flags.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ClientConfig } from './client-process.js';
import type { ClientReport } from './round-trips.js';
import type { ServerConfig } from './server-process.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));

export interface LaunchOptions {
  /** Node flags, e.g. --cpu-prof. */
  nodeArgs?: readonly string[];
  /** A command that runs the Node process, e.g. ['strace', '-f', '-c', '-o', FILE]. */
  wrap?: (role: 'server' | 'client', index: number) => string[];
}

export interface BenchServer {
  /** Stops the server with SIGTERM; resolves with the CPU time it reports. */
  stop(): Promise<{ cpuMs: number }>;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  return createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
}

/** Runs `script` (a file of this folder, e.g. 'client-process.js') with its config as argument. */
function launch(role: 'server' | 'client', script: string, index: number, config: object, stdin: 'pipe' | 'ignore', o: LaunchOptions): ChildProcess {
  const command = [...(o.wrap?.(role, index) ?? []), process.execPath, ...(o.nodeArgs ?? []), join(HERE, script), JSON.stringify(config)];
  return spawn(command[0]!, command.slice(1), { stdio: [stdin, 'pipe', 'inherit'] });
}

/** Starts a server process: server-process.js by default, or another script that prints "ready" and, on SIGTERM, its CPU time as JSON. */
export async function startBenchServer(config: ServerConfig | object, o: LaunchOptions = {}, script = 'server-process.js'): Promise<BenchServer> {
  const child = launch('server', script, 0, config, 'ignore', o);
  const out = lines(child);
  const first = await out.next();
  if (first.value !== 'ready') throw new Error(`bench server did not start: ${String(first.value)}`);
  return {
    async stop() {
      // Under a wrapper, the server is the wrapper's child: signal that one, as a plain run does.
      const pid = o.wrap === undefined ? child.pid! : Number(execFileSync('pgrep', ['-P', String(child.pid)]).toString().trim());
      process.kill(pid, 'SIGTERM');
      const report = await out.next();
      await new Promise((resolve) => child.once('exit', resolve));
      return JSON.parse(String(report.value)) as { cpuMs: number };
    },
  };
}

/** Starts client processes, lets them warm up, starts them together, returns their reports once they have exited. */
export async function runBenchClients(configs: ClientConfig[] | object[], o: LaunchOptions = {}, script = 'client-process.js'): Promise<ClientReport[]> {
  const children = configs.map((c, i) => launch('client', script, i, c, 'pipe', o));
  const outs = children.map(lines);
  for (const out of outs) if ((await out.next()).value !== 'ready') throw new Error('bench client did not start');
  for (const child of children) child.stdin!.write('go\n');
  const reports = await Promise.all(outs.map(async (out) => JSON.parse(String((await out.next()).value)) as ClientReport));
  const exited = children.map((child) => new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined))));
  for (const child of children) child.stdin!.end();
  await Promise.all(exited);
  return reports;
}

/** Clock ticks per second, for /proc/<pid>/stat's CPU times. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU time (user + system, ms) a live process has used so far, from /proc/<pid>/stat. */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS; // utime, stime
}

/**
 * Starts the real `wq serve` (bin/wq, as users run it) with `args`; ready once
 * it logs "server started". stop() reports the server process's own CPU time
 * (not that of its task processes), read just before SIGTERM.
 */
export async function startWqServe(wq: string, args: readonly string[], o: LaunchOptions = {}): Promise<BenchServer> {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), wq, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('server started')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`wq serve exited (${String(code)}) before it started: ${log}`)));
  });
  child.stderr!.resume();
  return {
    async stop() {
      const cpuMs = processCpuMs(child.pid!);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      return { cpuMs };
    },
  };
}
