/** A Redis server's options, resolved with their defaults, and what is checked of them. Pure. */
import type { Meter } from '@opentelemetry/api';
import { InvalidOptionError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import { stripUndefined } from '../../options.js';
import type { InterruptedPolicy } from '../../protocol.js';
import type { RedisQueueAddress } from '../../queue/address.js';

export interface RedisServerOptions {
  address: RedisQueueAddress;
  /** A task cut short by a dead or stopped server: run again (`rerun`) or answered with a `restarted` result (`fail`). @default 'rerun' */
  interrupted?: InterruptedPolicy;
  /** On stop: how long running tasks may finish before they are killed and put back in line. @default 30000 */
  shutdownGraceMs?: number;
  /** An unclaimed result is removed after this. @default 7 days */
  resultTtlMs?: number;
  /** The most tasks running at once across every server of the queue (BullMQ's global concurrency); unset: left as it is. */
  globalMaxTasks?: number;
  /** How long a job stays locked to this server without a renewal. At least 2 × killGraceMs + 1 s. @default 30000 */
  lockDurationMs?: number;
  /** How long the task manager waits after SIGTERM before SIGKILL (its `killGraceMs`): a task whose lock is in doubt must be gone before the lock expires. @default 2000 */
  killGraceMs?: number;
  /** Where commands write their output while they run (CommandTaskManager's logDir); each file is removed once stored. */
  logDir?: string;
  logger?: Logger;
  /** Where the server's instruments live (docs/metrics.md): the same as a spool server's, for what this server does. @default the global Meter */
  meter?: Meter;
}

export type ResolvedRedisServerOptions = Required<Omit<RedisServerOptions, 'globalMaxTasks' | 'logDir' | 'meter'>> & Pick<RedisServerOptions, 'globalMaxTasks' | 'logDir' | 'meter'>;

const DAY_MS = 24 * 60 * 60 * 1000;

export function resolveRedisServerOptions(options: RedisServerOptions): ResolvedRedisServerOptions {
  const resolved = {
    interrupted: 'rerun',
    shutdownGraceMs: 30_000,
    resultTtlMs: 7 * DAY_MS,
    lockDurationMs: 30_000,
    killGraceMs: 2000,
    logger: silentLogger,
    ...stripUndefined(options),
  } as ResolvedRedisServerOptions;
  checkLockDuration(resolved.lockDurationMs, resolved.killGraceMs);
  return resolved;
}

/**
 * The lock duration must leave time to kill a task whose lock is in doubt: it
 * is killed at `lock × 0.8 − kill grace` after its last renewal, and renewals
 * come every quarter of the lock duration (docs/scale-out.md).
 */
export function checkLockDuration(lockDurationMs: number, killGraceMs: number): void {
  if (lockDurationMs < 2 * killGraceMs + 1000) {
    throw new InvalidOptionError(`a lock duration of ${lockDurationMs / 1000} s leaves no time to kill a task (kill grace ${killGraceMs / 1000} s) before another server may take its job: give at least ${(2 * killGraceMs + 1000) / 1000} s`);
  }
}

/** How long before its lock expires a task whose lock could not be renewed is killed. */
export function killMarginMs(o: Pick<ResolvedRedisServerOptions, 'killGraceMs' | 'lockDurationMs'>): number {
  return o.killGraceMs + Math.floor(o.lockDurationMs * 0.2);
}
