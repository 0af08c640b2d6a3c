/** `wq serve`: builds a task manager from the flags and runs the server until a signal. */
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { parseRedisAddress } from '../queue/address.js';
import { commandLogDir, writableByOthers } from '../backends.js';
import { resolve } from 'node:path';
import { createLineLogger, type Logger, type LogLevel } from '../logger.js';
import { WorkQueueServer } from '../server.js';
import { CommandTaskManager } from '../task-manager/command.js';
import { LoadAwareTaskManager } from '../task-manager/load-aware.js';
import { ProcessPoolTaskManager } from '../task-manager/process-pool.js';
import type { TaskManager } from '../task-manager/types.js';
import { badVariableName } from '../task-input.js';
import { CliError, EXIT, resolveQueue } from './common.js';
import type { MetricsEndpoint } from './metrics-exporter.js';

export interface ServeFlags {
  spool?: string;
  /** `--queue redis://…`: serve a queue on Redis, beside other servers. */
  queue?: string;
  globalMaxTasks?: number;
  /** ms */
  lockDuration?: number;
  maxTasks: number;
  handler?: string;
  /** `--exec`, already split into words (parseExecCommand). */
  exec?: string[];
  /** `--accept-env NAME`, in order: the variables requests may set for an --exec command. */
  acceptEnv?: string[];
  failInterrupted?: boolean;
  durable?: boolean;
  allowSharedCommands?: boolean;
  allowForeignAborts?: boolean;
  maxLoad?: number;
  /** Bytes of output a command may write (--max-output); commands only. @default the manager's */
  maxOutput?: number;
  grace: number;
  killGrace: number;
  rescanInterval: number;
  resultTtl: number;
  logLevel: LogLevel;
  logFile?: string;
  metricsPort?: number;
  metricsHost?: string;
}

export async function serve(flags: ServeFlags): Promise<void> {
  const where = resolveQueue(flags);
  const redisOnly = [['--global-max-tasks', flags.globalMaxTasks], ['--lock-duration', flags.lockDuration]] as const;
  if (where.queue === undefined) {
    for (const [flag, value] of redisOnly) if (value !== undefined) throw new CliError(`${flag} goes with --queue redis://…: a spool has one server`, EXIT.usage);
  } else {
    if (flags.durable) throw new CliError('--durable is for a spool; on Redis, durability is the Redis server\'s (appendonly, see docs/scale-out.md)', EXIT.usage);
    if (flags.allowForeignAborts) throw new CliError('--allow-foreign-aborts is for a spool shared by several users; on Redis, whoever can reach the Redis server may abort any request (restrict that with Redis ACLs)', EXIT.usage);
    if (flags.handler === undefined && flags.exec === undefined && !flags.allowSharedCommands) {
      throw new CliError(
        'refusing to run commands from a queue on Redis: anyone who can reach the Redis server could run any command as this user ' +
          '(nothing there tells who filed a request, so even a root server would run anyone\'s). ' +
          'Serve it with --handler or --exec, or pass --allow-shared-commands if everyone who can write to that Redis may act as this user.',
        EXIT.usage,
      );
    }
  }
  if (where.queue !== undefined) {
    const { checkLockDuration } = await import('../redis/server.js');
    try {
      checkLockDuration(flags.lockDuration ?? 30_000, flags.killGrace);
    } catch (err) {
      throw new CliError(`--lock-duration: ${(err as Error).message}`, EXIT.usage);
    }
  }
  const spool = where.spool;
  const logDir = where.queue === undefined ? commandLogDir(spool!) : (await import('../redis/server.js')).makeLogDir();
  const sink = openLogSink(flags.logFile);
  const logger = createLineLogger(sink.write, flags.logLevel);
  const metrics = await startMetrics(flags, logger); // before the manager: a taken port fails before any worker starts
  const manager = await makeManager(flags, spool, logDir);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      // Killed, not left working: their requests stay in running/, and the next server runs them again.
      manager.killNow?.();
      logger.warn('second signal: exiting at once; the running tasks were killed and run again at the next start', { signal });
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    logger.info('signal received: finishing running tasks (send it again to exit at once)', { signal, graceSeconds: flags.grace / 1000 });
    controller.abort();
  };
  const onHangup = (): void => {
    sink.reopen();
    logger.info('log file reopened (SIGHUP)');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  if (where.queue !== undefined) {
    try {
      const { serveRedis } = await import('../redis/server.js');
      await serveRedis(
        {
          address: parseRedisAddress(where.queue),
          interrupted: flags.failInterrupted ? 'fail' : 'rerun',
          shutdownGraceMs: flags.grace,
          resultTtlMs: flags.resultTtl,
          globalMaxTasks: flags.globalMaxTasks,
          lockDurationMs: flags.lockDuration,
          killGraceMs: flags.killGrace,
          logDir,
          logger,
          meter: metrics?.meter,
        },
        manager,
        controller.signal,
      );
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onHangup);
      rmSync(logDir, { recursive: true, force: true });
      await metrics?.close();
      sink.close();
    }
    return;
  }
  const server = new WorkQueueServer({
    spool: spool!,
    interrupted: flags.failInterrupted ? 'fail' : 'rerun',
    shutdownGraceMs: flags.grace,
    rescanIntervalMs: flags.rescanInterval,
    resultTtlMs: flags.resultTtl,
    durable: flags.durable === true,
    abortPolicy: flags.allowForeignAborts ? 'anyone' : 'owner',
    requestOwners: flags.handler === undefined ? commandRequestOwners(process.getuid?.() ?? 0, flags.exec === undefined && !flags.allowSharedCommands) : undefined,
    logger,
    meter: metrics?.meter,
  });
  try {
    await server.processRequests(manager, { signal: controller.signal });
  } catch (err) {
    await manager.close();
    throw err;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
    await metrics?.close();
    sink.close();
  }
}

/**
 * Plain command mode runs whatever argv a request holds, as this server's user.
 * On a spool that other users can write (its directory or any state directory
 * writable by group or others, or owned by another user), that hands them this
 * user's account: refuse unless --allow-shared-commands says the operator means
 * it. (Who could redirect the spool is the server's own check, in every mode.)
 */
function refuseSharedCommandSpool(spool: string): void {
  // Looks, creates nothing: the server creates what is missing (private to it) once it has checked the path.
  const open = writableByOthers(spool);
  if (open.length > 0) {
    throw new CliError(
      `refusing to run commands from a spool other users can write (${open.join('; ')}): anyone who can put a request there ` +
        'would run any command as this user. Serve it with --handler or --exec instead, make it private (chown it to this user, chmod go-w), ' +
        'or pass --allow-shared-commands if every user who can write it may act as this one.',
      EXIT.spool,
    );
  }
}

/**
 * Whose requests a command server runs (the server's requestOwners): a root
 * server only root's, since it would run anyone else's command as root; plain
 * command mode on a private spool only its own user's and root's (a request
 * left from before the spool was made private is refused too); otherwise
 * anyone's who can write requested/.
 */
export function commandRequestOwners(serverUid: number, plainAndPrivate: boolean): number[] | undefined {
  if (serverUid === 0) return [0];
  return plainAndPrivate ? [serverUid, 0] : undefined;
}

interface LogSink {
  write: (line: string) => void;
  reopen: () => void;
  close: () => void;
}

/** stderr, or a file opened for appending (and reopened on SIGHUP, after logrotate moved it). */
function openLogSink(path: string | undefined): LogSink {
  if (path === undefined) return { write: (line) => void process.stderr.write(line), reopen: () => {}, close: () => {} };
  const open = (): number => {
    try {
      return openSync(path, 'a', 0o644);
    } catch (err) {
      throw new CliError(`cannot open --log-file ${path}: ${(err as Error).message}`, EXIT.usage);
    }
  };
  let fd = open();
  return {
    write: (line) => {
      try {
        writeSync(fd, line);
      } catch {
        process.stderr.write(line); // the disk is full or the file went away: do not lose the line
      }
    },
    reopen: () => {
      const old = fd;
      try {
        fd = open();
      } catch (err) {
        process.stderr.write(`wq: ${(err as Error).message}; still writing to the old file\n`);
        return;
      }
      closeSync(old);
    },
    close: () => closeSync(fd),
  };
}

/** The Prometheus endpoint, if asked for: only then is the OpenTelemetry SDK loaded. */
async function startMetrics(flags: ServeFlags, logger: Logger): Promise<MetricsEndpoint | undefined> {
  if (flags.metricsPort === undefined) {
    if (flags.metricsHost !== undefined) throw new CliError('--metrics-host needs --metrics-port', EXIT.usage);
    return undefined;
  }
  const { startMetricsEndpoint } = await import('./metrics-exporter.js');
  const endpoint = await startMetricsEndpoint({ port: flags.metricsPort, host: flags.metricsHost });
  logger.info('serving metrics', { url: endpoint.url });
  return endpoint;
}

async function makeManager(flags: ServeFlags, spool: string | undefined, logDir: string): Promise<TaskManager> {
  const manager = await makeBaseManager(flags, spool, logDir);
  return flags.maxLoad === undefined ? manager : new LoadAwareTaskManager(manager, { maxLoad: flags.maxLoad });
}

async function makeBaseManager(flags: ServeFlags, spool: string | undefined, logDir: string): Promise<TaskManager> {
  if (flags.acceptEnv !== undefined) {
    if (flags.exec === undefined) {
      throw new CliError('--accept-env goes with --exec: plain command mode takes every variable a request carries, and a --handler gets them as data', EXIT.usage);
    }
    for (const name of flags.acceptEnv) {
      const why = badVariableName(name);
      if (why !== undefined) throw new CliError(`--accept-env "${name}": expected a variable name, and this one ${why}`, EXIT.usage);
    }
  }
  if (flags.handler !== undefined) {
    if (flags.maxOutput !== undefined) throw new CliError('--max-output limits the output of commands; a --handler returns a value instead', EXIT.usage);
    const pool = new ProcessPoolTaskManager({ handler: resolve(flags.handler), size: flags.maxTasks, killGraceMs: flags.killGrace });
    try {
      await pool.ready();
    } catch (err) {
      await pool.close();
      throw new CliError((err as Error).message, EXIT.usage);
    }
    return pool;
  }
  const command = flags.exec ?? [];
  if (spool !== undefined && flags.exec === undefined && !flags.allowSharedCommands) refuseSharedCommandSpool(spool);
  return new CommandTaskManager({
    maxTasks: flags.maxTasks,
    command,
    acceptEnv: flags.exec === undefined ? 'all' : (flags.acceptEnv ?? []),
    killGraceMs: flags.killGrace,
    maxOutputBytes: flags.maxOutput,
    logDir,
  });
}
