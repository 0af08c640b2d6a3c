import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSpool } from '../../src/spool/layout.js';
import { decodeServerState, encodeServerState, readServerState, removeServerState, writeServerState, type ServerState } from '../../src/spool/server-state.js';

const STATE: ServerState = { pid: 4242, startedAt: 1_800_000_000_000, since: 1_800_000_001_000, hold: { reason: 'load', load: 3.5, maxLoad: 2 } };
const OWNER = { pid: 4242, host: 'h', startedAt: 1_800_000_000_000 };

t.test('a state survives encoding; anything else decodes as no state', async (t) => {
  t.strictSame(decodeServerState(encodeServerState(STATE)), STATE);
  for (const hold of [{ reason: 'none' }, { reason: 'capacity', maxTasks: 2 }, { reason: 'orphans', tasks: 1 }, { reason: 'stopping' }, { reason: 'results' }, { reason: 'fault' }] as const) {
    t.strictSame(decodeServerState(encodeServerState({ ...STATE, hold }))?.hold, hold, hold.reason);
  }
  const bad = [
    'not json',
    'null',
    '{"v":2,"pid":1,"startedAt":1,"since":1,"hold":{"reason":"none"}}',
    '{"v":1,"pid":"1","startedAt":1,"since":1,"hold":{"reason":"none"}}',
    '{"v":1,"pid":1,"startedAt":1,"since":1,"hold":{"reason":"nap"}}',
    '{"v":1,"pid":1,"startedAt":1,"since":1,"hold":{"reason":"capacity","maxTasks":-1}}',
    '{"v":1,"pid":1,"startedAt":1,"since":1,"hold":{"reason":"load","load":"high","maxLoad":2}}',
    '{"v":1,"pid":1,"startedAt":1,"since":1}',
  ];
  for (const text of bad) t.equal(decodeServerState(Buffer.from(text)), undefined, text);
});

t.test('written whole and replaced in place; read only for the server that wrote it', async (t) => {
  const paths = openSpool(join(t.testdir(), 'spool'));
  t.equal(readServerState(paths, OWNER), undefined, 'none yet');
  writeServerState(paths, { ...STATE, hold: { reason: 'capacity', maxTasks: 1 } });
  writeServerState(paths, STATE);
  t.strictSame(readServerState(paths, OWNER), STATE, 'the last one written');
  t.equal(readFileSync(paths.stateFile, 'utf8'), encodeServerState(STATE).toString());
  t.strictSame(readdirSync(paths.dirs.tmp), [], 'no temp file left');
  t.equal(readServerState(paths, { ...OWNER, startedAt: OWNER.startedAt + 1 }), undefined, "another server's (a crashed one's leftover) does not count");
  removeServerState(paths);
  t.equal(readServerState(paths, OWNER), undefined, 'removed');
  removeServerState(paths); // twice is harmless
});

t.test('something planted at server.state is no state, and is never followed', async (t) => {
  const dir = t.testdir();
  const paths = openSpool(join(dir, 'spool'));
  writeFileSync(join(dir, 'elsewhere'), encodeServerState(STATE));
  symlinkSync(join(dir, 'elsewhere'), paths.stateFile);
  t.equal(readServerState(paths, OWNER), undefined, 'a symlink');
  removeServerState(paths);
  mkdirSync(paths.stateFile);
  t.equal(readServerState(paths, OWNER), undefined, 'a directory');
  t.throws(() => writeServerState(paths, STATE), { code: 'EISDIR' }, 'a write fails (the server logs it and retries)');
  t.strictSame(readdirSync(paths.dirs.tmp), [], 'its temp file is removed');
});
