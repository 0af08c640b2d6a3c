/**
 * ResultWriter on a real full disk (a small tmpfs): a large result waits out a
 * disk that frees up again, and is swapped for a small error result only when
 * the disk stays full.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Logger } from '../../../src/logger.js';
import { NO_SPACE_ATTEMPTS_BEFORE_SHRINK } from '../../../src/spool/server/result-on-full-disk.js';
import { ResultWriter } from '../../../src/spool/server/result-writer.js';
import { encodeResult } from '../../../src/spool/codec.js';
import { entryPath, openSpool, type SpoolPaths } from '../../../src/spool/layout.js';
import { canMountTmpfs, mountTmpfs } from '../../fixtures/tmpfs.js';

const ID = '1795366421947895-8d42b22ad816';
const QUIET: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A spool on a 1 MiB tmpfs whose every free byte a filler file holds (as another process's file would). */
function fullSpool(t: Test): { paths: SpoolPaths; filler: { fd: number; bytes: number } } {
  const fs = mountTmpfs(t, '1m');
  const paths = openSpool(join(fs, 'spool'));
  const fd = openSync(join(fs, 'filler'), 'w');
  t.teardown(() => closeSync(fd));
  const chunk = Buffer.alloc(4096, 1);
  let bytes = 0;
  for (;;) {
    try {
      bytes += writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      return { paths, filler: { fd, bytes } };
    }
  }
}

const smallResult = (): Buffer => encodeResult({ id: ID, ok: false, status: 'error', error: { name: 'DiskFullError', message: 'full', code: 'ERR_DISK_FULL' }, finishedAt: 1 });
const bigResult = (): Buffer => encodeResult({ id: ID, ok: true, status: 'normal', value: { stdout: Buffer.alloc(200 * 1024, 120) }, finishedAt: Date.now() });

t.test('a large result a full disk refuses once, and which then fits, is published whole, not swapped for ERR_DISK_FULL', { skip: !canMountTmpfs && 'cannot mount a tmpfs here (not root?)' }, async (t) => {
  const { paths, filler } = fullSpool(t);
  const swapped: string[] = [];
  const writer = new ResultWriter(paths, false, QUIET, () => {}, () => {}, (id) => {
    swapped.push(id);
    return smallResult();
  });
  const big = bigResult();
  writer.write(ID, 'running', big);
  t.ok(writer.blocked, 'the first attempt failed: the disk is full');
  ftruncateSync(filler.fd, 0); // the other process's file is gone: room again
  await writer.idle();
  t.strictSame(swapped, [], 'not swapped');
  t.ok(readFileSync(entryPath(paths, 'complete', ID)).equals(big), 'the result itself is published');
});

t.test(`a large result a full disk keeps refusing is swapped for a small one after ${NO_SPACE_ATTEMPTS_BEFORE_SHRINK} attempts`, { skip: !canMountTmpfs && 'cannot mount a tmpfs here (not root?)' }, async (t) => {
  const { paths, filler } = fullSpool(t);
  const small = smallResult();
  let swaps = 0;
  const writer = new ResultWriter(paths, false, QUIET, () => {}, () => {}, () => {
    ftruncateSync(filler.fd, filler.bytes - 64 * 1024); // as the server frees the request's logs
    swaps++;
    return small;
  });
  writer.write(ID, 'running', bigResult());
  await writer.idle();
  t.equal(swaps, 1, 'swapped once');
  t.ok(readFileSync(entryPath(paths, 'complete', ID)).equals(small), 'the small error result is published');
});
