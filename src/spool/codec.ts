/**
 * Request and result envelopes: msgpack maps with a version field, decoded only
 * into plain data (no class instances from extension types), never larger than
 * the limits below. Encoding refuses what decoding would refuse.
 */
// The pure-JavaScript build: the main entry first probes for a native decoder, which
// costs more start-up time than it saves on envelopes this small.
import { Packr } from 'msgpackr/pack';
import { ProtocolError, RequestTooLargeError, type SerializedError } from '../errors.js';
import { hasTaskInput, invalidVariables, type TaskInput } from '../task-input.js';
import { PROTOCOL_VERSION, type ResultEnvelope } from './types.js';

export type { ResultEnvelope, ResultStatus } from './types.js';

import { MAX_REQUEST_BYTES } from '../queue/types.js';

/** Largest request file a server accepts (and a client writes): the queue's limit. */
export { MAX_REQUEST_BYTES };
/**
 * Envelope version of a request that carries `env`, `replaceEnv` or `stdin`.
 * A server that reads only version 1 rejects it (status `rejected`) rather
 * than run its task without them; a request without them stays version 1.
 */
export const REQUEST_INPUT_VERSION = 2;
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

export interface RequestEnvelope extends TaskInput {
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
  const why = checkTaskInput(envelope);
  if (why !== undefined) throw new ProtocolError(`request ${why}`);
  const v = hasTaskInput(envelope) ? REQUEST_INPUT_VERSION : PROTOCOL_VERSION;
  return encode({ v, type: 'request', ...envelope }, MAX_REQUEST_BYTES, 'request');
}

export function encodeResult(envelope: Omit<ResultEnvelope, 'v' | 'type'>): Buffer {
  return encode({ v: PROTOCOL_VERSION, type: 'result', ...envelope }, MAX_RESULT_BYTES, 'result');
}

export function decodeRequest(bytes: Uint8Array): RequestEnvelope {
  const value = decode(bytes, MAX_REQUEST_BYTES, 'request', [PROTOCOL_VERSION, REQUEST_INPUT_VERSION]);
  if (typeof value.submittedAt !== 'number' || !isPlainObject(value.client)) {
    throw new ProtocolError('request envelope is missing submittedAt or client');
  }
  if (value.runTimeoutMs !== undefined && !(typeof value.runTimeoutMs === 'number' && value.runTimeoutMs >= 0 && Number.isFinite(value.runTimeoutMs))) {
    throw new ProtocolError('request envelope has an invalid runTimeoutMs');
  }
  const carries = hasTaskInput(value);
  if (carries !== (value.v === REQUEST_INPUT_VERSION)) {
    throw new ProtocolError(carries ? `request envelope of version ${String(value.v)} carries env or stdin, which need version ${REQUEST_INPUT_VERSION}` : `request envelope of version ${REQUEST_INPUT_VERSION} carries neither env nor stdin`);
  }
  const why = checkTaskInput(value);
  if (why !== undefined) throw new ProtocolError(`request envelope ${why}`);
  if (value.env !== undefined) value.env = envWithTrueNames(bytes, value.env as Record<string, string>);
  return value as unknown as RequestEnvelope;
}

/** Decodes maps as Maps: keys as they are (the object decoder renames a key `__proto__` to `__proto_`). */
const mapPackr = new Packr({ useRecords: false, mapsAsObjects: false, moreTypes: false, structuredClone: false, bundleStrings: false, int64AsType: 'number', variableMapSize: true });

/**
 * A request's variables in an object without prototype, so that every valid
 * name is an ordinary key, `__proto__` too. Only when a name may have been
 * renamed is the request decoded again, with maps as Maps, to read them as sent.
 */
function envWithTrueNames(bytes: Uint8Array, decoded: Record<string, string>): Record<string, string> {
  let entries: Iterable<[string, string]> = Object.entries(decoded);
  if (Object.hasOwn(decoded, '__proto_')) {
    const again = (mapPackr.unpack(bytes) as Map<unknown, unknown>).get('env') as Map<string, string>;
    entries = again.entries();
  }
  const env = Object.create(null) as Record<string, string>;
  for (const [name, value] of entries) env[name] = value;
  return env;
}

export function decodeResult(bytes: Uint8Array): ResultEnvelope {
  const value = decode(bytes, MAX_RESULT_BYTES, 'result', [PROTOCOL_VERSION]);
  if (typeof value.ok !== 'boolean' || typeof value.id !== 'string' || typeof value.finishedAt !== 'number') {
    throw new ProtocolError('result envelope is missing ok, id or finishedAt');
  }
  if (!value.ok && !isSerializedError(value.error)) throw new ProtocolError('failed result carries no error');
  return value as unknown as ResultEnvelope;
}

function encode(envelope: Record<string, unknown>, maxBytes: number, what: 'request' | 'result'): Buffer {
  assertPlainData(envelope, what, 0);
  const bytes = packr.pack(envelope);
  if (bytes.length > maxBytes) {
    if (what === 'request') throw new RequestTooLargeError(bytes.length, maxBytes);
    throw new ProtocolError(`${what} is ${bytes.length} bytes encoded; the limit is ${maxBytes}`);
  }
  return bytes;
}

/** What is wrong with an envelope's `env`, `replaceEnv` and `stdin` (the first problem), or undefined. */
function checkTaskInput(envelope: { env?: unknown; replaceEnv?: unknown; stdin?: unknown }): string | undefined {
  if (envelope.env !== undefined) {
    const why = invalidVariables(envelope.env);
    if (why !== undefined) return `env ${why}`;
  }
  if (envelope.replaceEnv !== undefined && typeof envelope.replaceEnv !== 'boolean') return 'has a replaceEnv that is not a boolean';
  if (envelope.stdin !== undefined && !(envelope.stdin instanceof Uint8Array)) return 'has a stdin that is not bytes';
  return undefined;
}

function decode(bytes: Uint8Array, maxBytes: number, what: 'request' | 'result', versions: readonly number[]): Record<string, unknown> {
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
  if (!versions.includes(value.v as number)) {
    throw new ProtocolError(`${what} has protocol version ${String(value.v)}; this wq speaks ${versions.join(' and ')}`);
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
