/**
 * Tasks that outlive their server. The server records each task's process
 * group in `running/<id>.proc` as it starts it; a starting server kills, for
 * every request a dead server left in running/, what is still alive of that
 * group, and only once nothing of it lives is the request run again (or
 * failed). A group that cannot be killed (EPERM) or does not die stays held:
 * its request stays in running/, its slot counts against capacity, and it is
 * looked at again until it is gone. Decisions: protocol.ts judgeOrphan().
 */
import type { Logger } from '../../logger.js';
import { judgeOrphan, type GroupObservation, type TaskProcessRecord } from '../../protocol.js';
import { processRecordPath, type SpoolPaths } from '../layout.js';
import { decodeProcessRecord, encodeProcessRecord, MAX_PROCESS_RECORD_BYTES } from '../process-record.js';
import { ProtocolError } from '../../errors.js';
import * as sfs from '../fs.js';
import { bootId, groupMembers, readProcess } from '../../task-manager/process-table.js';
import { signalGroup } from '../../task-manager/process-group.js';

/** How a SIGKILL to a process group went. */
export type GroupKillResult = 'sent' | 'gone' | 'denied';

/** The operating system, as Orphans sees it (a plain-data fake in tests). */
export interface ProcessProbe {
  bootId(): string | undefined;
  /** The start time of a live process, in clock ticks since boot; undefined if it is gone. */
  startTicks(pid: number): number | undefined;
  observe(pgid: number): GroupObservation;
  killGroup(pgid: number): GroupKillResult;
}

export const liveProcessProbe: ProcessProbe = {
  bootId,
  startTicks: (pid) => readProcess(pid)?.startTicks,
  observe: (pgid) => {
    const leader = readProcess(pgid);
    const members = groupMembers(pgid);
    return leader === undefined ? { members } : { leader, members };
  },
  killGroup: (pgid) => {
    try {
      return signalGroup(pgid, 'SIGKILL') ? 'sent' : 'gone';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') return 'denied';
      throw err;
    }
  },
};

/** A killed group normally vanishes within milliseconds; one still there after this is treated as stuck. */
export const ORPHAN_SETTLE_MS = 5_000;

interface Held<Step> {
  step: Step;
  record: TaskProcessRecord;
  killedAtMs: number;
  /** Warned that it will not die: from now on it is looked at only at periodic rescans. */
  stuck: boolean;
}

export class Orphans<Step> {
  readonly #paths: SpoolPaths;
  readonly #log: Logger;
  readonly #probe: ProcessProbe;
  readonly #nowMs: () => number;
  readonly #held = new Map<string, Held<Step>>();

  constructor(paths: SpoolPaths, log: Logger, probe: ProcessProbe = liveProcessProbe, nowMs: () => number = () => performance.now()) {
    this.#paths = paths;
    this.#log = log;
    this.#probe = probe;
    this.#nowMs = nowMs;
  }

  /** Requests whose dead server's task still lives: they hold a slot each. */
  get size(): number {
    return this.#held.size;
  }

  /** Whether a group was killed moments ago and should be gone any moment: nothing starts meanwhile (FIFO). */
  get settling(): boolean {
    for (const held of this.#held.values()) if (!held.stuck) return true;
    return false;
  }

  /**
   * Records the process group a request's task leads, before the task counts
   * as started. Throws on a fault (ENOSPC, EMFILE): the caller kills the task.
   * Without /proc (no boot id) nothing can be recorded, and nothing is.
   * @param knownStartTicks its start time, when the manager knows it (a pool worker, read once); else read from /proc now
   */
  record(id: string, pid: number, knownStartTicks?: number): void {
    const boot = this.#probe.bootId();
    const startTicks = knownStartTicks ?? this.#probe.startTicks(pid);
    if (boot === undefined || startTicks === undefined) return; // no /proc, or already gone: nothing can outlive us
    sfs.writeNewReplacing(processRecordPath(this.#paths, id), encodeProcessRecord({ pid, startTicks, bootId: boot }));
  }

  /** Removes a request's record (its task ended, or its request left running/). */
  forget(id: string): void {
    sfs.removeEntry(processRecordPath(this.#paths, id));
  }

  /**
   * At start, for a request a dead server left in running/: kills what is left
   * of its task. True when nothing of it lives and `step` may go ahead now;
   * false when it is held, to come back from recheck() once gone.
   */
  settle(id: string, step: Step): boolean {
    const record = this.#readRecord(id);
    if (record === undefined) return true;
    const verdict = judgeOrphan(record, this.#probe.bootId(), this.#probe.observe(record.pid));
    if (verdict.kind === 'gone') {
      this.forget(id);
      return true;
    }
    this.#log.warn('killing the task the previous server left running; its request goes on once it is gone', { id, pgid: record.pid, pids: verdict.pids.join(',') });
    const held: Held<Step> = { step, record, killedAtMs: this.#nowMs(), stuck: false };
    this.#held.set(id, held);
    this.#kill(id, held);
    return false;
  }

  /**
   * Looks at held groups again (kills them again if still alive); returns the
   * steps of those now gone. `all`: stuck ones too (at periodic rescans).
   */
  recheck(all: boolean): Array<[string, Step]> {
    const released: Array<[string, Step]> = [];
    for (const [id, held] of this.#held) {
      if (held.stuck && !all) continue;
      const verdict = judgeOrphan(held.record, this.#probe.bootId(), this.#probe.observe(held.record.pid));
      if (verdict.kind === 'gone') {
        this.#held.delete(id);
        this.forget(id);
        this.#log.info('the task the previous server left running is gone', { id, pgid: held.record.pid });
        released.push([id, held.step]);
        continue;
      }
      this.#kill(id, held);
      if (!held.stuck && this.#nowMs() - held.killedAtMs >= ORPHAN_SETTLE_MS) {
        held.stuck = true;
        this.#log.warn('the task the previous server left running does not die; its request stays in running/ and holds a slot until it is gone', { id, pgid: held.record.pid, pids: verdict.pids.join(',') });
      }
    }
    return released;
  }

  #kill(id: string, held: Held<Step>): void {
    if (this.#probe.killGroup(held.record.pid) !== 'denied' || held.stuck) return;
    held.stuck = true; // no use retrying every few ms
    this.#log.warn('may not kill the task the previous server left running (EPERM); its request stays in running/ and holds a slot until it is gone', { id, pgid: held.record.pid });
  }

  /** A request's record, or undefined when there is none or it is not a valid one (logged). */
  #readRecord(id: string): TaskProcessRecord | undefined {
    let bytes: Buffer | undefined;
    try {
      bytes = sfs.readEntry(processRecordPath(this.#paths, id), MAX_PROCESS_RECORD_BYTES);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      bytes = Buffer.alloc(0);
    }
    if (bytes === undefined) return undefined;
    const record = decodeProcessRecord(bytes);
    if (record === undefined) {
      this.#log.warn('ignored an invalid process record', { id });
      sfs.removeAnyEntry(processRecordPath(this.#paths, id));
    }
    return record;
  }
}
