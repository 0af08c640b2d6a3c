/**
 * `node dist-bench/bench/syscalls.js [CONCURRENCY] [COUNT]` (after `npm run bench`
 * or `tsc -p tsconfig.bench.json`): system calls per request in the server
 * and in the client, counted by `strace -c -f` around the bench's own server
 * and client processes (in-process manager, no-op task). Unlike timings, these
 * counts do not depend on how busy the machine is. Needs strace.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ClientConfig } from './client-process.js';
import type { ServerConfig } from './server-process.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const concurrency = Number(process.argv[2] ?? 1);
const count = Number(process.argv[3] ?? 2000);
const WARMUP = 50;
const work = mkdtempSync(join(tmpdir(), 'wq-syscalls-'));
const spool = join(work, 'spool');

const firstLines = (child: ChildProcess): AsyncIterator<string> => createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const traced = (who: string, script: string, config: object, stdin: 'pipe' | 'ignore'): ChildProcess =>
  spawn('strace', ['-f', '-c', '-o', join(work, who), process.execPath, join(HERE, script), JSON.stringify(config)], { stdio: [stdin, 'pipe', 'inherit'] });

const serverConfig: ServerConfig = { spool, manager: 'inproc', maxTasks: 64, watch: true, rescanIntervalMs: 2000, durable: false };
const server = traced('server', 'server-process.js', serverConfig, 'ignore');
const fromServer = firstLines(server);
if ((await fromServer.next()).value !== 'ready') throw new Error('the server did not start');
const clientConfig: ClientConfig = { spool, count, concurrency, warmup: WARMUP, watch: true, recheckIntervalMs: 1000, durable: false };
const client = traced('client', 'client-process.js', clientConfig, 'pipe');
const fromClient = firstLines(client);
await fromClient.next(); // ready
client.stdin!.write('go\n');
await fromClient.next(); // its report
client.stdin!.end();
await new Promise((resolve) => client.once('exit', resolve));
// strace is the child; the server is its child: stop that one, as the bench does.
process.kill(Number(execFileSync('pgrep', ['-P', String(server.pid)]).toString().trim()), 'SIGTERM');
await fromServer.next();
await new Promise((resolve) => server.once('exit', resolve));

const requests = count + WARMUP;
process.stdout.write(`system calls per request, ${concurrency} concurrent client(s), ${requests} requests (strace -c -f):\n`);
for (const who of ['server', 'client']) {
  const rows = readFileSync(join(work, who), 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 5 && /^\d/.test(f[0]!) && f.at(-1) !== 'total')
    .map((f) => ({ name: f.at(-1)!, calls: Number(f[3]) }))
    .filter((r) => r.calls >= requests / 10) // start-up and periodic calls are not per request
    .sort((a, b) => b.calls - a.calls);
  const total = rows.reduce((sum, r) => sum + r.calls, 0) / requests;
  process.stdout.write(`  ${who}: ${total.toFixed(1)} (${rows.map((r) => `${r.name} ${(r.calls / requests).toFixed(2)}`).join(', ')})\n`);
}
rmSync(work, { recursive: true, force: true });
