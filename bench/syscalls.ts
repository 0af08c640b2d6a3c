/**
 * `node dist-bench/bench/syscalls.js [CONCURRENCY] [COUNT] [inproc|pool]` (after
 * `npm run bench` or `tsc -p tsconfig.bench.json`): system calls per request in
 * the server (with its pool's worker, for `pool`) and in the client, counted by
 * `strace -c -f` around the bench's own server and client processes (no-op task;
 * the in-process manager by default). Unlike timings, these
 * counts do not depend on how busy the machine is. Needs strace.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBenchClients, startBenchServer } from './processes.js';

const concurrency = Number(process.argv[2] ?? 1);
const count = Number(process.argv[3] ?? 2000);
const manager = process.argv[4] === 'pool' ? 'pool' : 'inproc';
const WARMUP = 50;
const work = mkdtempSync(join(tmpdir(), 'wq-syscalls-'));
const spool = join(work, 'spool');
const wrap = (role: 'server' | 'client'): string[] => ['strace', '-f', '-c', '-o', join(work, role)];

const server = await startBenchServer({ spool, manager, maxTasks: manager === 'pool' ? 1 : 64, watch: true, rescanIntervalMs: 2000, durable: false }, { wrap });
await runBenchClients([{ spool, count, concurrency, warmup: WARMUP, watch: true, recheckIntervalMs: 1000, durable: false }], { wrap });
await server.stop();

const requests = count + WARMUP;
process.stdout.write(`system calls per request, ${manager === 'pool' ? 'process pool (1)' : 'in-process manager'}, ${concurrency} concurrent client(s), ${requests} requests (strace -c -f):\n`);
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
