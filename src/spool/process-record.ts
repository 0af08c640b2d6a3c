/**
 * `running/<id>.proc`: the server's record of the process group a running
 * request's task leads (docs/protocol.md, *Task process records*). One line of
 * JSON, written by the server alone. Decoding checks every field, so a record
 * that is torn or planted can never make a server signal process group 1 or
 * its own: it reads as no record at all.
 */
import type { TaskProcessRecord } from '../protocol.js';

/** A record is a few dozen bytes; anything larger is not one. */
export const MAX_PROCESS_RECORD_BYTES = 512;
/** Linux pids are at most 2^22 (PID_MAX_LIMIT on 64-bit). */
const MAX_PID = 4_194_304;

export function encodeProcessRecord(record: TaskProcessRecord): Buffer {
  return Buffer.from(`${JSON.stringify({ v: 1, pid: record.pid, startTicks: record.startTicks, bootId: record.bootId })}\n`);
}

/** The record in `bytes`, or undefined when they are not a valid version-1 record. */
export function decodeProcessRecord(bytes: Uint8Array): TaskProcessRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    return undefined; // torn or foreign: not a record
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { v, pid, startTicks, bootId } = value as Record<string, unknown>;
  if (v !== 1 || typeof bootId !== 'string' || bootId.length > 64) return undefined;
  if (!(Number.isInteger(pid) && (pid as number) > 1 && (pid as number) <= MAX_PID)) return undefined;
  if (!(Number.isInteger(startTicks) && (startTicks as number) >= 0)) return undefined;
  return { pid: pid as number, startTicks: startTicks as number, bootId };
}
