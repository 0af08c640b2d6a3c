/**
 * Request and result envelopes: msgpack maps with a version field, decoded only
 * into plain data (no class instances from extension types), never larger than
 * the limits below. Encoding refuses what decoding would refuse.
 */
// The pure-JavaScript build: the main entry first probes for a native decoder, which
// costs more start-up time than it saves on envelopes this small.
import { Packr } from 'msgpackr/pack';
import { ProtocolError, type SerializedError } from '../errors.js';
import { PROTOCOL_VERSION, type ResultEnvelope } from './types.js';

export type { ResultEnvelope, ResultStatus } from './types.js';

/** Largest request file a server accepts (and a client writes). */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Largest result file a server writes (and a client reads). */
export const MAX_RESULT_BYTES = 16 * 1024 * 1024;
/** Deepest nesting of arrays/maps accepted in an envelope. */
const MAX_DEPTH = 64;

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  int64AsType: 'number',
  variableMapSize: true,
});

export interface RequestEnvelope {
  v: number;
  type: 'request';
  /** What the client asked for: an argv for command mode, any plain data for handlers. */
  body: unknown;
  /** Client's wall clock (ms) when it made the request. */
  submittedAt: number;
  /** Who made it, for `wq status` and logs. */
  client: { pid: number; host: string; uid?: number };
  /** The server terminates the task this long after it starts (status `timed_out`). */
  runTimeoutMs?: number;
}


export function encodeRequest(envelope: Omit<RequestEnvelope, 'v' | 'type'>): Buffer {
  return encode({ v: PROTOCOL_VERSION, type: 'request', ...envelope }, MAX_REQUEST_BYTES, 'request');
}

export function encodeResult(envelope: Omit<ResultEnvelope, 'v' | 'type'>): Buffer {
  return encode({ v: PROTOCOL_VERSION, type: 'result', ...envelope }, MAX_RESULT_BYTES, 'result');
}

export function decodeRequest(bytes: Uint8Array): RequestEnvelope {
  const value = decode(bytes, MAX_REQUEST_BYTES, 'request');
  if (typeof value.submittedAt !== 'number' || !isPlainObject(value.client)) {
    throw new ProtocolError('request envelope is missing submittedAt or client');
  }
  if (value.runTimeoutMs !== undefined && !(typeof value.runTimeoutMs === 'number' && value.runTimeoutMs >= 0 && Number.isFinite(value.runTimeoutMs))) {
    throw new ProtocolError('request envelope has an invalid runTimeoutMs');
  }
  return value as unknown as RequestEnvelope;
}

export function decodeResult(bytes: Uint8Array): ResultEnvelope {
  const value = decode(bytes, MAX_RESULT_BYTES, 'result');
  if (typeof value.ok !== 'boolean' || typeof value.id !== 'string' || typeof value.finishedAt !== 'number') {
    throw new ProtocolError('result envelope is missing ok, id or finishedAt');
  }
  if (!value.ok && !isSerializedError(value.error)) throw new ProtocolError('failed result carries no error');
  return value as unknown as ResultEnvelope;
}

function encode(envelope: Record<string, unknown>, maxBytes: number, what: string): Buffer {
  assertPlainData(envelope, what, 0);
  const bytes = packr.pack(envelope);
  if (bytes.length > maxBytes) {
    throw new ProtocolError(`${what} is ${bytes.length} bytes encoded; the limit is ${maxBytes}`);
  }
  return bytes;
}

function decode(bytes: Uint8Array, maxBytes: number, what: 'request' | 'result'): Record<string, unknown> {
  if (bytes.length === 0) throw new ProtocolError(`${what} file is empty`);
  if (bytes.length > maxBytes) throw new ProtocolError(`${what} file is ${bytes.length} bytes; the limit is ${maxBytes}`);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new ProtocolError(`${what} file is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(value)) throw new ProtocolError(`${what} file does not hold a msgpack map`);
  assertPlainData(value, what, 0);
  if (value.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`${what} has protocol version ${String(value.v)}; this wq speaks ${PROTOCOL_VERSION}`);
  }
  if (value.type !== what) throw new ProtocolError(`file holds a ${String(value.type)}, not a ${what}`);
  return value;
}

/** Only data that survives a msgpack round trip unchanged: no classes, no functions, no cycles. */
function assertPlainData(value: unknown, what: string, depth: number): void {
  if (depth > MAX_DEPTH) throw new ProtocolError(`${what} is nested deeper than ${MAX_DEPTH} levels`);
  if (value === null || value === undefined) return;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      return;
    case 'object':
      break;
    default:
      throw new ProtocolError(`${what} holds a ${typeof value}, which the spool cannot carry`);
  }
  if (value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (const item of value) assertPlainData(item, what, depth + 1);
    return;
  }
  if (!isPlainObject(value)) {
    const name = (value as object).constructor?.name ?? 'object';
    throw new ProtocolError(`${what} holds a ${name}; only plain objects, arrays, strings, numbers, booleans, null and bytes are allowed`);
  }
  for (const key of Object.keys(value)) assertPlainData(value[key], what, depth + 1);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isSerializedError(value: unknown): value is SerializedError {
  return isPlainObject(value) && typeof value.name === 'string' && typeof value.message === 'string';
}
