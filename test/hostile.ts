/**
 * Hostile and broken input inside the state directories: broken request files,
 * names that are not ids, and entries that are not regular files (FIFOs,
 * sockets, symlinks out of the spool, directories) in every state directory.
 * A real server and real clients on a real temp spool; nothing is mocked.
 *
 * The policy these tests hold the server to:
 * - a request (an id-named entry in requested/, pending/ or running/) that is not
 *   a readable regular file holding a valid envelope gets one `rejected` result,
 *   logged once, and its entry is removed (unlink, never followed; rmdir for an
 *   empty directory; a non-empty directory is left for the operator, logged once);
 * - a name that is not an id is left alone and logged once;
 * - nothing is ever opened through a symlink or blocked on (FIFOs).
 */
import t, { type Test } from 'tap';
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { openSpool } from '../src/spool/layout.js';
import { STAGED_SUFFIX } from '../src/spool/layout.js';
import { decodeResult, encodeRequest, MAX_REQUEST_BYTES } from '../src/spool/codec.js';
import * as sfs from '../src/spool/fs.js';
import { UnknownRequestError } from '../src/errors.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { GatedManager, makeOutside, mkfifo, mksocket, plantedId, plantFile, RecordingLogger, spoolIn, testClient, trackSettled } from './fixtures/hostile.js';

const STATE_DIRS = ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp'] as const;
const EMPTY = Object.fromEntries(STATE_DIRS.map((d) => [d, []]));
const REJECTED_LOG = 'rejected unreadable request';
const packr = new Packr({ useRecords: false });

/** A request envelope, complete but for `body`, whose encoded body is appended raw (for hostile msgpack). */
function envelopeWithRawBody(rawBody: Buffer): Buffer {
  const fields: Array<[string, unknown]> = [['v', 1], ['type', 'request'], ['submittedAt', 1], ['client', { pid: 1, host: 'h' }]];
  const parts = fields.flatMap(([key, value]) => [packr.pack(key), packr.pack(value)]);
  return Buffer.concat([Buffer.from([0x80 | (fields.length + 1)]), ...parts, packr.pack('body'), rawBody]);
}

/** Broken request files, by what is wrong with them; undefined: made by `special` below. */
function brokenRequests(): Record<string, Buffer> {
  const valid = encodeRequest({ body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' } });
  return {
    garbage: Buffer.from('this is not msgpack \u0000\u00ff\u00fe'),
    empty: Buffer.alloc(0),
    truncated: valid.subarray(0, valid.length - 3),
    'another envelope version': packr.pack({ v: 3, type: 'request', body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' } }),
    'an environment in a version 1 envelope': packr.pack({ v: 1, type: 'request', body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' }, env: { A: '1' } }),
    'an environment that is not strings': packr.pack({ v: 2, type: 'request', body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' }, env: { A: 1 } }),
    'a result, not a request': packr.pack({ v: 1, type: 'result', id: 'x', ok: true, status: 'normal', finishedAt: 1 }),
    'no client': packr.pack({ v: 1, type: 'request', body: 'x', submittedAt: 1 }),
    'a negative run timeout': packr.pack({ v: 1, type: 'request', body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' }, runTimeoutMs: -5 }),
    'a Date (msgpack extension)': packr.pack({ v: 1, type: 'request', body: new Date(0), submittedAt: 1, client: { pid: 1, host: 'h' } }),
    'nested 100,000 deep': envelopeWithRawBody(Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])])),
    'an array header claiming 4 billion items': envelopeWithRawBody(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0])),
    'a map header claiming 4 billion entries': envelopeWithRawBody(Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0])),
    'over the size limit': packr.pack({ v: 1, type: 'request', body: 'x'.repeat(MAX_REQUEST_BYTES), submittedAt: 1, client: { pid: 1, host: 'h' } }),
  };
}

/** Plants every broken request in `dir`, with ids from `base`; plus a sparse 8 GiB file. Returns id → what. */
function plantBroken(spool: string, dir: string, base: number): Map<string, string> {
  const planted = new Map<string, string>();
  let n = base;
  for (const [what, bytes] of Object.entries(brokenRequests())) {
    const id = plantedId(n++);
    plantFile(spool, dir, id, bytes);
    planted.set(id, what);
  }
  const sparse = plantedId(n++);
  const temp = join(spool, 'tmp', `sparse.${sparse}`);
  writeFileSync(temp, 'x');
  truncateSync(temp, 8 * 1024 ** 3); // 8 GiB, sparse: the server must not read (or allocate) it
  renameSync(temp, join(spool, dir, sparse));
  planted.set(sparse, 'a sparse 8 GiB file');
  return planted;
}

t.test('broken request files in requested/, pending/ and running/ each get one rejected result, logged once', async (t) => {
  const { spool } = spoolIn(t);
  openSpool(spool);
  const atStart = new Map([...plantBroken(spool, 'pending', 100), ...plantBroken(spool, 'running', 200)]);
  const logger = new RecordingLogger();
  const manager = new GatedManager(2, (req) => req, false);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const settled = trackSettled(done);
  const client = testClient(t, spool);
  const whileServing = plantBroken(spool, 'requested', 300);
  for (const [id, what] of [...atStart, ...whileServing]) {
    const result = await client.waitForResult(id, { timeoutMs: 10_000 });
    t.match(result, { id, ok: false, status: 'rejected', error: { name: 'ProtocolError', code: 'ERR_PROTOCOL' } }, what);
  }
  await manager.moreTicks(10); // several rescans: none of them answers or logs again
  for (const [id, what] of [...atStart, ...whileServing]) {
    t.equal(logger.find(REJECTED_LOG, (f) => f.id === id).length, 1, `logged once: ${what}`);
  }
  t.strictSame(manager.calls, [], 'no task ever saw a broken request');
  t.equal(await client.run('good'), 'good', 'good requests still run');
  t.strictSame(spoolContents(spool), EMPTY, 'nothing left behind');
  t.notOk(settled(), 'the server never stopped');
});

/** Names that are not request ids, as strings or (non-UTF-8) raw bytes. */
const ID = '1795366421947895-8d42b22ad816';
const JUNK_NAMES: Array<string | Buffer> = [
  '.hidden',
  `.${ID}`,
  '...',
  `..${ID}`,
  `${ID}..`,
  ' leading-space',
  `${ID} `,
  'in side',
  `${ID}\n`,
  'tab\there',
  '1795366421947895-8D42B22AD816',
  `${ID}.tmp`,
  'a'.repeat(255),
  ID + 'f'.repeat(226),
  Buffer.from([0x6a, 0x75, 0x6e, 0x6b, 0xff, 0xfe, 0x2e]), // "junk" + bytes that are not UTF-8
];
const asText = (name: string | Buffer): string => (typeof name === 'string' ? name : name.toString('utf8'));
const pathIn = (dir: string, name: string | Buffer): string | Buffer =>
  typeof name === 'string' ? join(dir, name) : Buffer.concat([Buffer.from(`${dir}/`), name]);

t.test('names that are not ids are left alone in every directory and logged once each', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  const before = outside.snapshot();
  const paths = openSpool(spool);
  const atStart = ['requested', 'pending', 'running', 'aborting', 'complete'] as const;
  for (const dir of atStart) for (const name of JUNK_NAMES) writeFileSync(pathIn(paths.dirs[dir], name), 'junk');
  // Odd types under odd names, too: never opened, followed or removed.
  mkfifo(join(paths.dirs.requested, 'fifo junk'));
  symlinkSync(outside.file, join(paths.dirs.requested, '.link'));
  mkdirSync(join(paths.dirs.requested, 'dir..'));
  const logger = new RecordingLogger();
  const manager = new GatedManager(1, (req) => req, false);
  startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  t.equal(await client.run('first'), 'first');
  for (const name of JUNK_NAMES) {
    const late = Buffer.concat([Buffer.from('late-'), Buffer.from(name)]);
    if (late.length <= 255) writeFileSync(pathIn(paths.dirs.requested, late), 'junk');
  }
  await manager.moreTicks(10);
  t.equal(await client.run('second'), 'second', 'the server is still serving');
  t.strictSame(manager.calls, ['first', 'second'], 'junk never ran');

  for (const dir of atStart) {
    const left = readdirSync(paths.dirs[dir], { encoding: 'buffer' }).map((b) => b.toString('latin1'));
    for (const name of JUNK_NAMES) {
      const raw = Buffer.from(name).toString('latin1');
      t.ok(left.includes(raw), `${dir}/${JSON.stringify(asText(name))} is still there`);
      t.equal(readFileSync(pathIn(paths.dirs[dir], name), 'utf8'), 'junk', 'untouched');
    }
  }
  t.ok(lstatSync(join(paths.dirs.requested, 'fifo junk')).isFIFO(), 'the FIFO is left alone');
  t.ok(lstatSync(join(paths.dirs.requested, '.link')).isSymbolicLink(), 'the symlink is left alone');
  t.ok(statSync(join(paths.dirs.requested, 'dir..')).isDirectory(), 'the directory is left alone');
  t.equal(outside.snapshot(), before, 'nothing outside the spool changed');

  for (const dir of ['requested', 'pending', 'running', 'aborting']) {
    for (const name of JUNK_NAMES) {
      const logged = logger.find('ignoring an entry whose name is not a request id', (f) => f.dir === dir && f.name === JSON.stringify(asText(name)));
      t.equal(logged.length, 1, `${dir}/${JSON.stringify(asText(name))} logged once`);
    }
  }
  for (const name of ['fifo junk', '.link', 'dir..']) {
    t.equal(logger.find('ignoring an entry whose name is not a request id', (f) => f.name === JSON.stringify(name)).length, 1, `${name} logged once`);
  }
});

type Kind = 'fifo' | 'socket' | 'symlink to a file outside' | 'symlink to a directory outside' | 'symlink to a FIFO outside' | 'dangling symlink' | 'empty directory' | 'non-empty directory';
const KINDS: Kind[] = ['fifo', 'socket', 'symlink to a file outside', 'symlink to a directory outside', 'symlink to a FIFO outside', 'dangling symlink', 'empty directory', 'non-empty directory'];

/** Makes an entry of `kind` at `path`, pointing into `outside` where it points anywhere. */
async function plantKind(t: Test, kind: Kind, path: string, outside: { dir: string; file: string; subdir: string }): Promise<void> {
  switch (kind) {
    case 'fifo':
      return mkfifo(path);
    case 'socket':
      return mksocket(t, path);
    case 'symlink to a file outside':
      return symlinkSync(outside.file, path);
    case 'symlink to a directory outside':
      return symlinkSync(outside.subdir, path);
    case 'symlink to a FIFO outside':
      return symlinkSync(join(outside.dir, 'fifo'), path);
    case 'dangling symlink':
      return symlinkSync(join(outside.dir, 'created-through-a-symlink'), path);
    case 'empty directory':
      return mkdirSync(path);
    case 'non-empty directory':
      mkdirSync(path);
      return writeFileSync(join(path, 'inside'), 'inside');
  }
}

t.test('entries that are not regular files, under request ids, in requested/, pending/ and running/', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  mkfifo(join(outside.dir, 'fifo'));
  const before = outside.snapshot();
  const paths = openSpool(spool);
  const planted = new Map<string, { kind: Kind; dir: string }>();
  let n = 0;
  const plantAll = async (dir: 'requested' | 'pending' | 'running'): Promise<void> => {
    for (const kind of KINDS) {
      const id = plantedId(n++);
      await plantKind(t, kind, join(paths.dirs[dir], id), outside);
      planted.set(id, { kind, dir });
    }
  };
  await plantAll('pending');
  await plantAll('running');
  const logger = new RecordingLogger();
  const manager = new GatedManager(2, (req) => req, false);
  startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  await plantAll('requested');

  for (const [id, { kind, dir }] of planted) {
    const result = await client.waitForResult(id, { timeoutMs: 10_000 });
    t.match(result, { id, ok: false, status: 'rejected', error: { name: 'ProtocolError' } }, `${dir}: ${kind}`);
  }
  await manager.moreTicks(10);
  for (const [id, { kind, dir }] of planted) {
    t.equal(logger.find(REJECTED_LOG, (f) => f.id === id).length, 1, `${dir}: ${kind}: rejected and logged once`);
    const where = STATE_DIRS.filter((d) => sfs.entryExists(join(spool, d, id)));
    if (kind === 'non-empty directory') {
      t.strictSame(readdirSync(join(spool, where[0] ?? 'missing', id)), ['inside'], `${dir}: ${kind}: left for the operator, contents untouched`);
      t.equal(logger.find(/non-empty directory/, (f) => f.id === id).length, 1, `${dir}: ${kind}: logged once`);
    } else {
      t.strictSame(where, [], `${dir}: ${kind}: removed`);
    }
  }
  t.equal(outside.snapshot(), before, 'nothing outside the spool was read, written or removed');
  t.notOk(sfs.entryExists(join(outside.dir, 'created-through-a-symlink')), 'nothing was created through a dangling symlink');
  t.strictSame(manager.calls, [], 'no task ran');
  t.equal(await client.run('good'), 'good', 'the server still serves');
});

t.test('abort markers that are FIFOs, symlinks or directories: the abort is carried out, nothing is followed', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  mkfifo(join(outside.dir, 'fifo'));
  const before = outside.snapshot();
  const logger = new RecordingLogger();
  const manager = new GatedManager(0);
  startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  const markers: Kind[] = ['fifo', 'symlink to a file outside', 'symlink to a FIFO outside', 'dangling symlink', 'empty directory', 'non-empty directory'];
  const ids: string[] = [];
  for (let i = 0; i <= markers.length; i++) ids.push(await client.enqueue(i));
  await waitFor(() => spoolContents(spool).pending.length === ids.length, 'all requests pending');
  for (const [i, kind] of markers.entries()) await plantKind(t, kind, join(spool, 'aborting', ids[i]!), outside);
  await waitFor(() => spoolContents(spool).pending.length === 1, 'the aborts carried out');
  await manager.moreTicks(10);
  t.strictSame(spoolContents(spool).pending, [ids[markers.length]], 'only the request nobody aborted is left');
  t.strictSame(spoolContents(spool).aborting, [ids[markers.indexOf('non-empty directory')]], 'markers removed, but for the non-empty directory');
  t.strictSame(readdirSync(join(spool, 'aborting', ids[markers.indexOf('non-empty directory')]!)), ['inside'], 'whose contents are untouched');
  t.equal(logger.find(/non-empty directory/).length, 1, 'and which is logged once');
  for (const id of ids.slice(0, markers.length)) await t.rejects(client.wait(id), UnknownRequestError);
  t.equal(outside.snapshot(), before, 'nothing outside the spool changed');
  t.notOk(sfs.entryExists(join(outside.dir, 'created-through-a-symlink')));
  manager.release();
});

t.test('entries planted at complete/<id> before the result is written are removed, never written through', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  mkfifo(join(outside.dir, 'fifo'));
  const before = outside.snapshot();
  const logger = new RecordingLogger();
  const kinds = ['symlink to a file outside', 'symlink to a directory outside', 'symlink to a FIFO outside', 'dangling symlink', 'fifo', 'socket', 'empty directory', 'a regular file'] as const;
  const manager = new GatedManager(kinds.length);
  startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  const ids: string[] = [];
  for (let i = 0; i < kinds.length; i++) ids.push(await client.enqueue(i));
  await waitFor(() => manager.waiting === kinds.length, 'every task running');
  for (const [i, kind] of kinds.entries()) {
    const path = join(spool, 'complete', ids[i]!);
    if (kind === 'a regular file') writeFileSync(path, 'forged result');
    else await plantKind(t, kind, path, outside);
  }
  manager.release();
  // The server's result replaces each planted entry (a waiting client might trip over the planted one first).
  const published = (id: string): boolean => {
    const stat = sfs.entryStat(join(spool, 'complete', id));
    return stat?.isFile() === true && decodeResult(readFileSync(join(spool, 'complete', id))).ok;
  };
  await waitFor(() => ids.every(published), 'every real result published');
  for (const [i, id] of ids.entries()) {
    t.strictSame(await client.wait(id), { echo: i }, `${kinds[i]}: the client gets the real result`);
    t.equal(logger.find(/foreign entry at complete/, (f) => f.id === id).length, 1, `${kinds[i]}: logged once`);
  }
  t.equal(outside.snapshot(), before, 'nothing outside the spool was written');
  t.notOk(sfs.entryExists(join(outside.dir, 'created-through-a-symlink')), 'nothing created through the dangling symlink');
  t.strictSame(spoolContents(spool), EMPTY);
});

t.test('a non-empty directory planted at complete/<id>: the result is dropped, logged once, and the server carries on', async (t) => {
  const { spool } = spoolIn(t);
  const logger = new RecordingLogger();
  const manager = new GatedManager(1);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const settled = trackSettled(done);
  const client = testClient(t, spool);
  const id = await client.enqueue('blocked');
  await waitFor(() => manager.waiting === 1, 'running');
  mkdirSync(join(spool, 'complete', id));
  writeFileSync(join(spool, 'complete', id, 'inside'), 'inside');
  manager.release();
  await waitFor(() => !spoolContents(spool).running.includes(id), 'the request leaves running/');
  await manager.moreTicks(10);
  t.equal(logger.find(/cannot publish the result/, (f) => f.id === id).length, 1, 'logged once');
  t.strictSame(readdirSync(join(spool, 'complete', id)), ['inside'], 'the directory is left for the operator, untouched');
  // The directory is not a result: the client ignores it and, the request being in no other state, calls it unknown.
  await t.rejects(client.waitForResult(id, { timeoutMs: 10_000 }), { name: 'UnknownRequestError' }, 'a waiting client gets an error, not a hang');
  t.strictSame(await client.run('next'), { echo: 'next' }, 'the server carries on');
  t.notOk(settled(), 'still running');
});

t.test('tmp/: symlinks planted at the temp names the server uses next are skipped, never written through', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  const before = outside.snapshot();
  const paths = openSpool(spool);
  // This process's next temp number (the counter is shared by every writer in the process).
  const probe = sfs.writeTemp(paths.dirs.tmp, 'probe', Buffer.from('p'));
  const next = Number(probe.split('.').pop()) + 1;
  sfs.removeEntry(probe);
  for (let i = next; i < next + 200; i++) {
    for (const tag of ['result', 'request', 'abort']) symlinkSync(outside.file, join(paths.dirs.tmp, `${tag}.${process.pid}.${i}`));
  }
  const manager = new GatedManager(2, (req) => req, false);
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool);
  for (let i = 0; i < 10; i++) t.equal(await client.run(i), i);
  t.equal(outside.snapshot(), before, 'the symlinks were never written through');
  t.equal(spoolContents(spool).tmp.length, 600, 'and are still there for housekeeping');
});

t.test('housekeeping removes old FIFOs and symlinks from tmp/ and logs/ without following them, and leaves directories', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  mkfifo(join(outside.dir, 'fifo'));
  const before = outside.snapshot();
  const paths = openSpool(spool);
  const orphan = plantedId(1);
  const planted: Record<'tmp' | 'logs', Record<string, Kind | 'regular'>> = {
    tmp: { 'result.1.1': 'fifo', 'result.1.2': 'symlink to a file outside', 'result.1.3': 'symlink to a directory outside', 'result.1.4': 'symlink to a FIFO outside', 'result.1.5': 'dangling symlink', 'result.1.6': 'empty directory', 'result.1.7': 'non-empty directory', 'result.1.8': 'regular' },
    logs: { [`${orphan}.stdout`]: 'symlink to a file outside', [`${orphan}.stderr`]: 'fifo', [`${orphan}.pid`]: 'non-empty directory' },
  };
  for (const [dir, entries] of Object.entries(planted) as Array<['tmp' | 'logs', Record<string, Kind | 'regular'>]>) {
    for (const [name, kind] of Object.entries(entries)) {
      if (kind === 'regular') writeFileSync(join(paths.dirs[dir], name), 'old');
      else await plantKind(t, kind, join(paths.dirs[dir], name), outside);
    }
  }
  const logger = new RecordingLogger();
  // The server's clock is two hours ahead: everything planted is older than the leftover age (1 h).
  startServer(t, new GatedManager(1), { spool, rescanIntervalMs: 20, housekeepingIntervalMs: 1, now: () => Date.now() + 2 * 3600_000, logger });
  await waitFor(() => readdirSync(paths.dirs.tmp).length === 2 && readdirSync(paths.dirs.logs).length === 1, 'housekeeping to remove what it may');
  t.strictSame(readdirSync(paths.dirs.tmp).sort(), ['result.1.6', 'result.1.7'], 'directories are left in tmp/');
  t.strictSame(readdirSync(paths.dirs.logs), [`${orphan}.pid`], 'and in logs/');
  t.strictSame(readdirSync(join(paths.dirs.tmp, 'result.1.7')), ['inside'], 'untouched');
  t.equal(outside.snapshot(), before, 'nothing outside the spool was followed or removed');
  t.strictSame(logger.find(/housekeeping failed/), [], 'housekeeping never failed');
});

t.test('a symlink planted at running/<id>.result (where results are staged) is never written through', async (t) => {
  const { root, spool } = spoolIn(t);
  const outside = makeOutside(root);
  const before = outside.snapshot();
  const manager = new GatedManager(1);
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool);
  const id = await client.enqueue('staged');
  await waitFor(() => manager.waiting === 1, 'running');
  symlinkSync(outside.file, join(spool, 'running', `${id}${STAGED_SUFFIX}`));
  manager.release();
  t.strictSame(await client.wait(id, { timeoutMs: 10_000 }), { echo: 'staged' }, 'the result is published');
  t.equal(outside.snapshot(), before, 'the symlink was never written through');
});
