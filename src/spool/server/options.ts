/**
 * The options of WorkQueueServer, their defaults and their validation (pure).
 */
import type { Meter } from '@opentelemetry/api';
import { InvalidOptionError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import { assertDurationMs, stripUndefined } from '../../options.js';
import { MAX_TIMER_DELAY_MS } from '../../long-timer.js';
import type { InterruptedPolicy } from '../../protocol.js';
import type { AbortPolicy } from '../permissions.js';

export interface WorkQueueServerOptions {
  /** The spool directory; created if missing. */
  spool: string;
  /**
   * What to do with requests found in `running/` at start (a previous server
   * died or was stopped while they ran): run them again, or complete them with
   * a "server restarted" error.
   * @default 'rerun'
   */
  interrupted?: InterruptedPolicy;
  /**
   * Watch `requested/` and `aborting/` for new entries, and the spool directory
   * for changes to its layout. With `false` the server only polls, every
   * `rescanIntervalMs`, and checks the layout at every tick (the ancestor's
   * behaviour; for benchmarks).
   * @default true
   */
  watch?: boolean;
  /**
   * Period of the safety rescan of `requested/` and `aborting/`, which catches
   * what the watcher dropped (inotify overflows silently). At most 2^31-1 ms.
   * @default 2000
   */
  rescanIntervalMs?: number;
  /**
   * How long an abort for an id that does not exist (yet) is kept, so that it
   * still wins if the request appears.
   * @default 600000 (10 minutes)
   */
  abortTombstoneMs?: number;
  /**
   * Who may abort a queued or running request: its owner (the user who made
   * its file), the server's user and root; or anyone who can write aborting/.
   * @default 'owner'
   */
  abortPolicy?: AbortPolicy;
  /**
   * Run only requests whose file is owned by one of these uids; any other
   * request gets a `rejected` result and never starts. `wq serve` sets it for
   * command servers: `[0]` when it runs as root (it would run anyone else's
   * command as root), and its own uid and root's in plain command mode without
   * `--allow-shared-commands`.
   * @default undefined: every request anyone could write to requested/ runs
   * @example requestOwners: [0]
   */
  requestOwners?: readonly number[];
  /**
   * On shutdown, how long running tasks may go on to finish before they are
   * terminated (terminated tasks are re-run by the next server).
   * @default 0
   */
  shutdownGraceMs?: number;
  /** fsync result files and directories before a result counts as written. @default false */
  durable?: boolean;
  /** Where the server logs transitions and summaries. @default silent */
  logger?: Logger;
  /** OpenTelemetry Meter for the server's instruments. @default the global meter */
  meter?: Meter;
  /**
   * Wall clock in ms, injectable for tests. When injected, metric durations are
   * measured with it too. @default Date.now (durations: performance.now, monotonic)
   */
  now?: () => number;
  /** Interval of the "still alive" info log line. @default 300000 (5 minutes) */
  heartbeatIntervalMs?: number;
  /**
   * Results nobody claims (their client died) are removed after this long.
   * @default 604800000 (7 days)
   */
  resultTtlMs?: number;
  /** Temp files and orphaned logs are removed after this long. @default 3600000 (1 hour) */
  leftoverMaxAgeMs?: number;
  /** How often housekeeping (TTL, temp files, orphaned logs) runs. @default 60000 */
  housekeepingIntervalMs?: number;
}

export type ResolvedOptions = Required<Omit<WorkQueueServerOptions, 'meter' | 'requestOwners'>> & { meter: Meter | undefined; requestOwners: readonly number[] | undefined };

/** Fills defaults and validates; pure. */
export function resolveServerOptions(options: WorkQueueServerOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    interrupted: 'rerun',
    watch: true,
    rescanIntervalMs: 2000,
    abortTombstoneMs: 600_000,
    abortPolicy: 'owner',
    shutdownGraceMs: 0,
    durable: false,
    logger: silentLogger,
    now: Date.now,
    heartbeatIntervalMs: 300_000,
    resultTtlMs: 7 * 24 * 3600_000,
    leftoverMaxAgeMs: 3600_000,
    housekeepingIntervalMs: 60_000,
    ...stripUndefined(options),
    spool: options.spool,
    meter: options.meter,
    requestOwners: options.requestOwners,
  };
  if (typeof resolved.spool !== 'string' || resolved.spool === '') {
    throw new InvalidOptionError(`Expected \`spool\` to be a non-empty string, got \`${String(resolved.spool)}\``);
  }
  if (resolved.abortPolicy !== 'owner' && resolved.abortPolicy !== 'anyone') {
    throw new InvalidOptionError(`Expected \`abortPolicy\` to be 'owner' or 'anyone', got \`${String(resolved.abortPolicy)}\``);
  }
  const owners = resolved.requestOwners;
  if (owners !== undefined && !(Array.isArray(owners) && owners.every((uid) => Number.isSafeInteger(uid) && uid >= 0))) {
    throw new InvalidOptionError(`Expected \`requestOwners\` to be an array of uids (whole numbers >= 0), got \`${String(owners)}\``);
  }
  if (resolved.interrupted !== 'rerun' && resolved.interrupted !== 'fail') {
    throw new InvalidOptionError(`Expected \`interrupted\` to be 'rerun' or 'fail', got \`${String(resolved.interrupted)}\``);
  }
  const durations = ['rescanIntervalMs', 'abortTombstoneMs', 'shutdownGraceMs', 'heartbeatIntervalMs', 'resultTtlMs', 'leftoverMaxAgeMs', 'housekeepingIntervalMs'] as const;
  for (const key of durations) {
    const min = key === 'rescanIntervalMs' || key === 'housekeepingIntervalMs' ? 1 : 0;
    // The rescan period is a plain setInterval: beyond 2^31-1 ms it would overflow and rescan every millisecond.
    assertDurationMs(key, resolved[key], min, key === 'rescanIntervalMs' ? MAX_TIMER_DELAY_MS : undefined);
  }
  return resolved;
}
