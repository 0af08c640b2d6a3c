/** The small error result a full disk leaves of a large one: plain data in, plain data out. */
import t from 'tap';
import { decodeResult, encodeResult } from '../../../src/spool/codec.js';
import { diskFullResult, NO_SPACE_ATTEMPTS_BEFORE_SHRINK, shouldShrinkOnFullDisk, SMALL_RESULT_BYTES } from '../../../src/spool/server/result-on-full-disk.js';

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

t.test('shouldShrinkOnFullDisk: only a large result, and only once the disk has refused it NO_SPACE_ATTEMPTS_BEFORE_SHRINK times in a row', async (t) => {
  t.equal(NO_SPACE_ATTEMPTS_BEFORE_SHRINK, 3);
  for (let failures = 1; failures < NO_SPACE_ATTEMPTS_BEFORE_SHRINK; failures++) {
    t.equal(shouldShrinkOnFullDisk(1024 * 1024, failures), false, `a large result after ${failures} refusal(s): retried as it is (the disk may free up)`);
  }
  t.equal(shouldShrinkOnFullDisk(1024 * 1024, NO_SPACE_ATTEMPTS_BEFORE_SHRINK), true, 'a large result the disk keeps refusing: swapped');
  t.equal(shouldShrinkOnFullDisk(SMALL_RESULT_BYTES, 100), false, 'a small result: always waits for room');
});
