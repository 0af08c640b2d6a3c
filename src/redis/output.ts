/**
 * A command's whole output, when it did not fit in its result: the server
 * stores each stream under its own key beside the result (the spool keeps it
 * in logs/<id>.*), and the claiming client puts it back into the value with
 * the spool's rules: only a stream of exactly the counted length that begins
 * with the inline bytes replaces them; otherwise the result keeps its
 * `…Dropped` count and the output reads as cut (never silently). Pure, but
 * for takeResult(), which reads a result and its output from Redis.
 */
import { ProtocolError } from '../errors.js';
import type { ResultTake } from '../queue/backend.js';
import type { RequestResult } from '../queue/types.js';
import { decodeResult, isPlainObject } from '../spool/codec.js';
import type { RedisClient } from './connect.js';
import type { QueueKeys } from './keys.js';
import { MAX_OUTPUT_LIMIT_BYTES } from '../task-manager/output-budget.js';

export const STREAMS = ['stdout', 'stderr'] as const;
export type StreamName = (typeof STREAMS)[number];

/** The streams of a command value that are cut (a `…Dropped` count above 0), with the whole length each should have. */
export function cutStreams(value: unknown): Array<{ stream: StreamName; bytes: number }> {
  if (!isPlainObject(value)) return [];
  const cut: Array<{ stream: StreamName; bytes: number }> = [];
  for (const stream of STREAMS) {
    const inline = value[stream];
    const dropped = value[`${stream}Dropped`];
    if (inline instanceof Uint8Array && typeof dropped === 'number' && dropped > 0 && inline.length + dropped <= MAX_OUTPUT_LIMIT_BYTES) {
      cut.push({ stream, bytes: inline.length + dropped });
    }
  }
  return cut;
}

/** Puts whole streams back into a command value (see the module's rules); streams not given, or not matching, stay cut. */
export function completeOutput(value: unknown, whole: Partial<Record<StreamName, Uint8Array | null>>): void {
  if (!isPlainObject(value)) return;
  for (const { stream, bytes } of cutStreams(value)) {
    const bytesOf = whole[stream];
    const inline = value[stream] as Uint8Array;
    if (bytesOf == null || bytesOf.length !== bytes) continue;
    if (!Buffer.from(bytesOf.buffer, bytesOf.byteOffset, inline.length).equals(inline)) continue;
    value[stream] = bytesOf;
    delete value[`${stream}Dropped`];
  }
}

/**
 * The result of `id` if it is there: claimed (GETDEL: of two claimers only
 * one gets it) or only read, with its whole output unless `keepOutput`.
 * Anything else under the key was not stored by a server for this request:
 * it is put back as it was (unless a server stored the real one meanwhile)
 * and refused, and the wait goes on.
 */
export async function takeResult(redis: RedisClient, keys: QueueKeys, id: string, take: ResultTake): Promise<{ result: RequestResult } | { refused: string } | undefined> {
  const claim = take.take === 'claim';
  const key = keys.result(id);
  const bytes = claim ? ((await redis.multi().getdelBuffer(key).zrem(keys.results, id).exec()) as Array<[Error | null, Buffer | null]>)[0]![1] : await redis.getBuffer(key);
  if (bytes === null) return undefined;
  let result: RequestResult;
  try {
    result = decodeResult(bytes);
    if (result.id !== id) throw new ProtocolError(`it is the result of ${result.id}`);
  } catch (err) {
    if (claim) await redis.set(key, bytes, 'NX');
    return { refused: (err as Error).message };
  }
  if (result.logs === true && !take.keepOutput) {
    const whole: Record<string, Buffer | null> = {};
    for (const { stream } of cutStreams(result.value)) whole[stream] = claim ? await redis.getdelBuffer(keys.output(id, stream)) : await redis.getBuffer(keys.output(id, stream));
    if (claim) await redis.del(keys.output(id, 'stdout'), keys.output(id, 'stderr'));
    completeOutput(result.value, whole);
    delete result.logs;
  }
  return { result };
}
