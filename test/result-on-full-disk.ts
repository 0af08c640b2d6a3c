/** The small error result a full disk leaves of a large one: plain data in, plain data out. */
import t from 'tap';
import { decodeResult, encodeResult } from '../src/spool/codec.js';
import { diskFullResult } from '../src/result-on-full-disk.js';

t.test('a large result becomes a small ERR_DISK_FULL error result with the same id and timings, without value or logs', async (t) => {
  const big = encodeResult({ id: '1795366421947895-8d42b22ad816', ok: true, status: 'normal', logs: true, value: { stdout: Buffer.alloc(1024 * 1024, 120) }, queuedAt: 1, startedAt: 2, finishedAt: 3 });
  const small = diskFullResult(big)!;
  t.ok(small.length < 1024, `small (${small.length} bytes)`);
  const result = decodeResult(small);
  t.match(result, { id: '1795366421947895-8d42b22ad816', ok: false, status: 'error', queuedAt: 1, startedAt: 2, finishedAt: 3, error: { name: 'DiskFullError', code: 'ERR_DISK_FULL' } });
  t.match(result.error!.message, /disk is full.*1 MiB/);
  t.notOk('value' in result || 'logs' in result, 'no value, no logs');
});

t.test('bytes that are not a result get no replacement', async (t) => {
  t.equal(diskFullResult(Buffer.from('not msgpack at all')), undefined);
});
