import t from 'tap';
import { Packr } from 'msgpackr';
import { ProtocolError } from '../../src/errors.js';
import { decodeRequest, decodeResult, encodeRequest, encodeResult, MAX_REQUEST_BYTES, MAX_RESULT_BYTES, REQUEST_INPUT_VERSION } from '../../src/spool/codec.js';
import { PROTOCOL_VERSION } from '../../src/spool/layout.js';
import type { TaskInput } from '../../src/task-input.js';

const CLIENT = { pid: 4242, host: 'build-7', uid: 1000 };
const ID = '1795366421947895-8d42b22ad816';

/** A packer with none of the codec's checks, to craft files a real client would never write. */
const raw = new Packr({ useRecords: false, mapsAsObjects: true });

function requestEnvelope(body: unknown): Record<string, unknown> {
  return { v: PROTOCOL_VERSION, type: 'request', body, submittedAt: 1_700_000_000_000, client: CLIENT };
}

function nested(depth: number): unknown {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { inner: value };
  return value;
}

/** A deterministic PRNG, so a failing fuzz case can be replayed. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('request envelopes round trip with their body intact', async (t) => {
  const bodies: unknown[] = [
    { argv: ['echo', 'hi'], cwd: '/tmp' },
    'a string',
    0,
    -1.5,
    Number.MAX_SAFE_INTEGER,
    true,
    null,
    [],
    {},
    ['ünïcödé ✓', { deep: [1, [2, [3]]] }],
    Buffer.from([0, 1, 2, 255]),
    nested(60),
  ];
  for (const body of bodies) {
    const bytes = encodeRequest({ body, submittedAt: 1_700_000_000_123, client: CLIENT });
    t.ok(Buffer.isBuffer(bytes) && bytes.length > 0, 'encodes to bytes');
    const decoded = decodeRequest(bytes);
    t.equal(decoded.v, PROTOCOL_VERSION);
    t.equal(decoded.type, 'request');
    t.equal(decoded.submittedAt, 1_700_000_000_123);
    t.strictSame({ ...decoded.client }, CLIENT);
    if (body instanceof Uint8Array) {
      t.ok(decoded.body instanceof Uint8Array, 'bytes stay bytes');
      t.equal(Buffer.from(decoded.body as Uint8Array).toString('hex'), Buffer.from(body).toString('hex'));
    } else {
      t.same(decoded.body, body, `body ${JSON.stringify(body)?.slice(0, 40)}`);
    }
  }
});

t.test('result envelopes round trip, for success and for failure', async (t) => {
  const ok = decodeResult(encodeResult({ id: ID, ok: true, status: 'normal', value: { exitCode: 0, out: 'x' }, queuedAt: 1, startedAt: 2, finishedAt: 3 }));
  t.match(ok, { v: PROTOCOL_VERSION, type: 'result', id: ID, ok: true, status: 'normal', queuedAt: 1, startedAt: 2, finishedAt: 3 });
  t.same(ok.value, { exitCode: 0, out: 'x' });

  const error = { name: 'TypeError', message: 'boom', code: 'E_BOOM', stack: 'TypeError: boom\n    at x' };
  const failed = decodeResult(encodeResult({ id: ID, ok: false, status: 'error', error, finishedAt: 9 }));
  t.equal(failed.ok, false);
  t.equal(failed.status, 'error');
  t.same(failed.error, error);
  t.equal(failed.value, undefined);
});

t.test('a result bigger than the request limit but within the result limit is fine', async (t) => {
  const value = 'x'.repeat(MAX_REQUEST_BYTES * 2);
  const decoded = decodeResult(encodeResult({ id: ID, ok: true, status: 'normal', value, finishedAt: 1 }));
  t.equal((decoded.value as string).length, value.length);
});

t.test('decoding refuses bytes that are not one of our envelopes', async (t) => {
  const good = encodeRequest({ body: { argv: ['true'] }, submittedAt: 1, client: CLIENT });
  const cases: Array<[string, Uint8Array]> = [
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('hello, this is not msgpack at all')],
    ['a lone reserved byte', Buffer.from([0xc1])],
    ['a msgpack array, not a map', raw.pack([1, 2, 3])],
    ['a msgpack string', raw.pack('request')],
    ['trailing bytes after a valid envelope', Buffer.concat([good, Buffer.from([0x01, 0x02])])],
    ['missing submittedAt', raw.pack({ v: PROTOCOL_VERSION, type: 'request', body: 1, client: CLIENT })],
    ['client is not a map', raw.pack({ ...requestEnvelope(1), client: 'me' })],
  ];
  for (const [what, bytes] of cases) {
    t.throws(() => decodeRequest(bytes), ProtocolError, what);
  }
});

t.test('every truncation of a valid envelope is refused', async (t) => {
  const good = encodeRequest({ body: { argv: ['echo', 'a', 'b'], n: 12345678901 }, submittedAt: 1, client: CLIENT });
  let refused = 0;
  for (let len = 1; len < good.length; len++) {
    try {
      decodeRequest(good.subarray(0, len));
    } catch (err) {
      if (err instanceof ProtocolError) refused++;
    }
  }
  t.equal(refused, good.length - 1, 'each proper prefix throws ProtocolError');
});

t.test('random garbage never decodes and only ever throws ProtocolError', async (t) => {
  const random = mulberry32(0x5eed);
  const others: string[] = [];
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256)));
    for (const decode of [decodeRequest, decodeResult]) {
      try {
        decode(bytes);
        accepted++;
      } catch (err) {
        if (!(err instanceof ProtocolError)) others.push(`${bytes.toString('hex')}: ${String(err)}`);
      }
    }
  }
  t.equal(accepted, 0, 'nothing random passes as an envelope');
  t.strictSame(others, [], 'no other error escapes');
});

t.test('decoding checks the version and the kind of envelope', async (t) => {
  for (const v of [0, PROTOCOL_VERSION + 1, '1', undefined]) {
    t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope(1), v })), ProtocolError, `v = ${String(v)}`);
  }
  t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope(1), type: 'result' })), ProtocolError, 'a result is not a request');
  t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope(1), type: undefined })), ProtocolError, 'no type');
  const result = encodeResult({ id: ID, ok: true, status: 'normal', value: 1, finishedAt: 1 });
  t.throws(() => decodeRequest(result), { name: 'ProtocolError', message: /result, not a request/ });
  const request = encodeRequest({ body: 1, submittedAt: 1, client: CLIENT });
  t.throws(() => decodeResult(request), { name: 'ProtocolError', message: /request, not a result/ });
  const failedWithoutError = raw.pack({ v: PROTOCOL_VERSION, type: 'result', id: ID, ok: false, status: 'error', finishedAt: 1 });
  t.throws(() => decodeResult(failedWithoutError), ProtocolError, 'a failed result must carry an error');
  const missingId = raw.pack({ v: PROTOCOL_VERSION, type: 'result', ok: true, status: 'normal', finishedAt: 1 });
  t.throws(() => decodeResult(missingId), ProtocolError, 'a result must carry its id');
});

t.test('size limits hold on both sides', async (t) => {
  const big = 'x'.repeat(MAX_REQUEST_BYTES);
  t.throws(() => encodeRequest({ body: big, submittedAt: 1, client: CLIENT }), { name: 'RequestTooLargeError', code: 'ERR_REQUEST_TOO_LARGE', limitBytes: 1048576, message: /limit is 1048576/ });
  const justFits = 'x'.repeat(MAX_REQUEST_BYTES - 200);
  t.equal((decodeRequest(encodeRequest({ body: justFits, submittedAt: 1, client: CLIENT })).body as string).length, justFits.length, 'just under the limit is fine');
  t.throws(() => decodeRequest(raw.pack(requestEnvelope(big))), ProtocolError, 'an oversized file is refused before it is parsed');
  t.throws(() => decodeRequest(Buffer.alloc(MAX_REQUEST_BYTES + 1)), { name: 'ProtocolError', message: /limit/ });
  t.throws(() => decodeResult(Buffer.alloc(MAX_RESULT_BYTES + 1)), { name: 'ProtocolError', message: /limit/ });
  t.throws(() => encodeResult({ id: ID, ok: true, status: 'normal', value: 'y'.repeat(MAX_RESULT_BYTES), finishedAt: 1 }), ProtocolError);
});

t.test('encoding refuses values that would not come back unchanged', async (t) => {
  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const cases: Array<[string, unknown]> = [
    ['Map', new Map([['a', 1]])],
    ['Set', new Set([1])],
    ['Date', new Date(0)],
    ['class instance', new Point(1, 2)],
    ['function', () => 1],
    ['symbol', Symbol('s')],
    ['bigint', 10n],
    ['Error', new Error('x')],
    ['RegExp', /x/],
    ['Float64Array', new Float64Array([1])],
    ['nested Map', { argv: ['a'], extra: [new Map()] }],
    ['function deep inside', { a: { b: [{ c: () => 1 }] } }],
    ['cycle', cyclic],
  ];
  for (const [what, body] of cases) {
    t.throws(() => encodeRequest({ body, submittedAt: 1, client: CLIENT }), ProtocolError, `request body: ${what}`);
    t.throws(() => encodeResult({ id: ID, ok: true, status: 'normal', value: body, finishedAt: 1 }), ProtocolError, `result value: ${what}`);
  }
});

t.test('nesting deeper than 64 levels is refused on both sides', async (t) => {
  // The body is one level below the envelope, so a body nested 63 deep is 64 levels in all.
  t.doesNotThrow(() => encodeRequest({ body: nested(63), submittedAt: 1, client: CLIENT }), 'at the limit');
  t.throws(() => encodeRequest({ body: nested(64), submittedAt: 1, client: CLIENT }), { name: 'ProtocolError', message: /deeper than 64/ }, 'one past the limit');
  t.doesNotThrow(() => decodeRequest(raw.pack(requestEnvelope(nested(63)))), 'at the limit, decoded');
  t.throws(() => decodeRequest(raw.pack(requestEnvelope(nested(64)))), { name: 'ProtocolError', message: /deeper than 64/ }, 'one past the limit, decoded');
  t.throws(() => decodeRequest(raw.pack(requestEnvelope(nested(70)))), { name: 'ProtocolError', message: /deeper than 64/ });
  t.throws(() => decodeResult(raw.pack({ v: PROTOCOL_VERSION, type: 'result', id: ID, ok: true, status: 'normal', value: nested(100), finishedAt: 1 })), ProtocolError);
  // Far deeper than any stack: still a ProtocolError, not a crash.
  const fields = Object.entries({ v: PROTOCOL_VERSION, type: 'request', submittedAt: 1, client: CLIENT }).flatMap(([k, v]) => [raw.pack(k), raw.pack(v)]);
  const deepBody = Buffer.concat([Buffer.alloc(200_000, 0x91), Buffer.from([0xc0])]); // [[[[…null…]]]]
  const deep = Buffer.concat([Buffer.from([0x85]), ...fields, raw.pack('body'), deepBody]);
  t.throws(() => decodeRequest(deep), ProtocolError, 'a very deep array');
});

t.test('msgpack extension types are refused on decode', async (t) => {
  const more = new Packr({ moreTypes: true, structuredClone: true, useRecords: false });
  const cases: Array<[string, Uint8Array]> = [
    ['Set', more.pack(requestEnvelope(new Set([1, 2])))],
    ['Error', more.pack(requestEnvelope(new Error('from a file')))],
    ['TypeError', more.pack(requestEnvelope(new TypeError('from a file')))],
    ['Date (timestamp extension)', more.pack(requestEnvelope(new Date(0)))],
    ['RegExp', more.pack(requestEnvelope(/x+/g))],
    ['Float64Array', more.pack(requestEnvelope(new Float64Array([1, 2])))],
    ['BigInt', new Packr({ useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0]).pack(requestEnvelope(2n ** 70n))],
    ['Set inside an array', more.pack(requestEnvelope([1, { s: new Set() }]))],
    ['Set as the client', more.pack({ ...requestEnvelope(1), client: new Set() })],
  ];
  for (const [what, bytes] of cases) {
    t.throws(() => decodeRequest(bytes), ProtocolError, what);
  }
  const resultWithError = more.pack({ v: PROTOCOL_VERSION, type: 'result', id: ID, ok: true, status: 'normal', value: new RangeError('r'), finishedAt: 1 });
  t.throws(() => decodeResult(resultWithError), ProtocolError, 'an Error extension in a result');
});

t.test('a request that carries env or stdin is envelope version 2, which a reader of version 1 refuses; one without stays version 1', async (t) => {
  const plain = raw.unpack(encodeRequest({ body: 'x', submittedAt: 1, client: CLIENT })) as Record<string, unknown>;
  t.equal(plain.v, 1, 'no env, no stdin: version 1, readable by every server of protocol 1');
  const inputs: TaskInput[] = [{ env: { A: '1' } }, { stdin: Buffer.from('in') }, { env: {}, replaceEnv: true }];
  for (const input of inputs) {
    const bytes = encodeRequest({ body: 'x', submittedAt: 1, client: CLIENT, ...input });
    const decoded = raw.unpack(bytes) as Record<string, unknown>;
    t.equal(decoded.v, REQUEST_INPUT_VERSION, `${Object.keys(input).join('+')}: version ${REQUEST_INPUT_VERSION}`);
    // What a server of version 1 does with it (its decoder checks v === 1): it refuses the request, never runs it without its input.
    t.not(decoded.v, PROTOCOL_VERSION, 'an older server rejects it rather than run the task without it');
    t.same(decodeRequest(bytes), { v: REQUEST_INPUT_VERSION, type: 'request', body: 'x', submittedAt: 1, client: CLIENT, ...input }, 'and this one reads it back');
  }
  const stdin = decodeRequest(encodeRequest({ body: 'x', submittedAt: 1, client: CLIENT, stdin: Buffer.from([0, 255, 10]) })).stdin;
  t.ok(stdin instanceof Uint8Array && Buffer.from(stdin).equals(Buffer.from([0, 255, 10])), 'stdin comes back as the same bytes');
});

t.test('env and stdin are checked on both sides', async (t) => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a value that is not a string', { env: { A: 1 } }, /env gives A a number, not a string/],
    ['a name with =', { env: { 'A=B': 'x' } }, /name contains "="/],
    ['an empty name', { env: { '': 'x' } }, /name is empty/],
    ['a NUL in a value', { env: { A: 'x\0y' } }, /NUL/],
    ['an env that is a list', { env: ['A=1'] }, /not a map/],
    ['stdin that is text', { stdin: 'text' }, /stdin that is not bytes/],
    ['replaceEnv that is not a boolean', { env: {}, replaceEnv: 'yes' }, /replaceEnv that is not a boolean/],
  ];
  for (const [what, input, message] of bad) {
    t.throws(() => encodeRequest({ body: 'x', submittedAt: 1, client: CLIENT, ...(input as object) }), { name: 'ProtocolError', message }, `encode: ${what}`);
    t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope('x'), v: REQUEST_INPUT_VERSION, ...input })), { name: 'ProtocolError', message }, `decode: ${what}`);
  }
  t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope('x'), env: { A: '1' } })), { name: 'ProtocolError', message: /version 1 carries env or stdin, which need version 2/ }, 'env in a version 1 envelope');
  t.throws(() => decodeRequest(raw.pack({ ...requestEnvelope('x'), v: REQUEST_INPUT_VERSION })), { name: 'ProtocolError', message: /version 2 carries neither env nor stdin/ });
  t.throws(() => decodeResult(raw.pack({ v: REQUEST_INPUT_VERSION, type: 'result', id: ID, ok: true, status: 'normal', finishedAt: 1 })), { name: 'ProtocolError', message: /speaks 1$/ }, 'results stay version 1');
  const big = Buffer.alloc(MAX_REQUEST_BYTES);
  t.throws(() => encodeRequest({ body: 'x', submittedAt: 1, client: CLIENT, stdin: big }), { name: 'RequestTooLargeError' }, 'stdin counts against the request limit');
});
