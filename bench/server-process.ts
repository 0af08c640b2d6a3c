/**
 * A benchmark server in its own process. Reads its configuration as JSON from
 * argv[2], prints "ready" once it holds the spool, and on SIGTERM prints its
 * CPU time as JSON and exits.
 */
import { writeFileSync } from 'node:fs';
import { WorkQueueServer } from '../src/server.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import { ProcessPoolTaskManager } from '../src/task-manager/process-pool.js';
import type { TaskManager } from '../src/task-manager/types.js';

export interface ServerConfig {
  spool: string;
  /** Serve this queue on Redis (serveRedis) instead of the spool. */
  queue?: string;
  manager: 'inproc' | 'pool';
  maxTasks: number;
  watch: boolean;
  rescanIntervalMs: number;
  durable: boolean;
  /** Serve Prometheus metrics on this port (loads the OpenTelemetry SDK). */
  metricsPort?: number;
}

const config = JSON.parse(process.argv[2]!) as ServerConfig;
let manager: TaskManager;
if (config.manager === 'pool') {
  const handler = `${config.spool}.noop-handler.mjs`;
  writeFileSync(handler, 'export default (request) => request;\n');
  const pool = new ProcessPoolTaskManager({ handler, size: config.maxTasks, execArgv: [] });
  await pool.ready();
  manager = pool;
} else {
  manager = new InProcessTaskManager((request: unknown) => request, { maxTasks: config.maxTasks });
}

let meter;
let stopMetrics = async (): Promise<void> => {};
if (config.metricsPort !== undefined) {
  const { startMetricsEndpoint } = await import('../src/cli/metrics-exporter.js');
  const endpoint = await startMetricsEndpoint({ port: config.metricsPort, host: '127.0.0.1' });
  meter = endpoint.meter;
  stopMetrics = () => endpoint.close();
}

const controller = new AbortController();
if (config.queue !== undefined) {
  // A queue on Redis: "ready" once the server has said it serves.
  const { serveRedis } = await import('../src/redis/server.js');
  const { parseRedisAddress } = await import('../src/queue/address.js');
  const cpuAtStart = process.cpuUsage();
  const say = (message: string): void => void (message === 'server started' && process.stdout.write('ready\n'));
  const logger = { debug: () => {}, info: say, warn: (m: string) => void process.stderr.write(`bench server: ${m}\n`), error: (m: string) => void process.stderr.write(`bench server: ${m}\n`) };
  process.on('SIGTERM', () => {
    const cpu = process.cpuUsage(cpuAtStart);
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
    controller.abort();
  });
  await serveRedis({ address: parseRedisAddress(config.queue), logger, shutdownGraceMs: 1000 }, manager, controller.signal);
  process.exit(0);
}
const server = new WorkQueueServer({
  spool: config.spool,
  watch: config.watch,
  rescanIntervalMs: config.rescanIntervalMs,
  durable: config.durable,
  ...(meter === undefined ? {} : { meter }),
});
const cpuAtStart = process.cpuUsage();
const done = server.processRequests(manager, { signal: controller.signal });
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  const cpu = process.cpuUsage(cpuAtStart);
  process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
  controller.abort();
});
await done;
await stopMetrics();
