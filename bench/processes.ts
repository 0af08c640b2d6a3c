/**
 * The bench's server and client processes (server-process.ts, client-process.ts):
 * start them, wait until they are ready, collect their reports. `wrap` runs
 * each under another command (e.g. strace); `nodeArgs` passes Node flags.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ClientConfig, ClientReport } from './client-process.js';
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

function launch(role: 'server' | 'client', index: number, config: object, stdin: 'pipe' | 'ignore', o: LaunchOptions): ChildProcess {
  const command = [...(o.wrap?.(role, index) ?? []), process.execPath, ...(o.nodeArgs ?? []), join(HERE, `${role}-process.js`), JSON.stringify(config)];
  return spawn(command[0]!, command.slice(1), { stdio: [stdin, 'pipe', 'inherit'] });
}

export async function startBenchServer(config: ServerConfig, o: LaunchOptions = {}): Promise<BenchServer> {
  const child = launch('server', 0, config, 'ignore', o);
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
export async function runBenchClients(configs: ClientConfig[], o: LaunchOptions = {}): Promise<ClientReport[]> {
  const children = configs.map((c, i) => launch('client', i, c, 'pipe', o));
  const outs = children.map(lines);
  for (const out of outs) if ((await out.next()).value !== 'ready') throw new Error('bench client did not start');
  for (const child of children) child.stdin!.write('go\n');
  const reports = await Promise.all(outs.map(async (out) => JSON.parse(String((await out.next()).value)) as ClientReport));
  const exited = children.map((child) => new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined))));
  for (const child of children) child.stdin!.end();
  await Promise.all(exited);
  return reports;
}
