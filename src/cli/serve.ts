/** `wq serve`: builds a task manager from the flags and runs the server until a signal. */
import { resolve } from 'node:path';
import { createLineLogger, type LogLevel } from '../logger.js';
import { WorkQueueServer } from '../server.js';
import { CommandTaskManager } from '../task-manager/command.js';
import { ProcessPoolTaskManager } from '../task-manager/process-pool.js';
import type { TaskManager } from '../task-manager/types.js';
import { CliError, EXIT, resolveSpool, splitCommand } from './common.js';

export interface ServeFlags {
  spool?: string;
  maxTasks: number;
  handler?: string;
  exec?: string;
  failInterrupted?: boolean;
  grace: number;
  killGrace: number;
  rescanInterval: number;
  logLevel: LogLevel;
}

export async function serve(flags: ServeFlags): Promise<void> {
  const spool = resolveSpool(flags.spool);
  const logger = createLineLogger((line) => process.stderr.write(line), flags.logLevel);
  const manager = await makeManager(flags);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      logger.warn('second signal: exiting at once; running tasks are left to the next server', { signal });
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    logger.info('signal received: finishing running tasks (send it again to exit at once)', { signal, graceSeconds: flags.grace / 1000 });
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const server = new WorkQueueServer({
    spool,
    interrupted: flags.failInterrupted ? 'fail' : 'rerun',
    shutdownGraceMs: flags.grace,
    rescanIntervalMs: Math.max(1, flags.rescanInterval),
    logger,
  });
  try {
    await server.processRequests(manager, { signal: controller.signal });
  } catch (err) {
    await manager.close();
    throw err;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

async function makeManager(flags: ServeFlags): Promise<TaskManager> {
  if (flags.handler !== undefined) {
    const pool = new ProcessPoolTaskManager({ handler: resolve(flags.handler), size: flags.maxTasks, killGraceMs: flags.killGrace });
    try {
      await pool.ready();
    } catch (err) {
      await pool.close();
      throw new CliError((err as Error).message, EXIT.usage);
    }
    return pool;
  }
  const command = flags.exec === undefined ? [] : splitCommand(flags.exec);
  if (flags.exec !== undefined && command.length === 0) throw new CliError('--exec needs a command', EXIT.usage);
  return new CommandTaskManager({ maxTasks: flags.maxTasks, command, killGraceMs: flags.killGrace });
}
