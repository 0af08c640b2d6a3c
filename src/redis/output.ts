/**
 * A command's whole output, when it did not fit in its result: the server
 * stores each stream under its own key beside the result (the spool keeps it
 * in logs/<id>.*), and the claiming client puts it back into the value with
 * the spool's rules: only a stream of exactly the counted length that begins
 * with the inline bytes replaces them; otherwise the result keeps its
 * `…Dropped` count and the output reads as cut (never silently). Pure.
 */
import { isPlainObject } from '../spool/codec.js';
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
