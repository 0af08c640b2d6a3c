/**
 * DirectoryWatchers on a real spool: every target is watched (the spool
 * directory too), events name their target, and a watch that could not be set
 * up or broke is re-armed by rewatch().
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DirectoryWatchers, type WatchHandlers, type WatchTarget } from '../../../src/spool/server/directory-watchers.js';
import { openSpool } from '../../../src/spool/layout.js';
import { waitFor } from '../../fixtures/helpers.js';

function recorder(): WatchHandlers & { names: Array<[WatchTarget, string | null]>; armed: Array<[WatchTarget, boolean]>; broken: WatchTarget[] } {
  const r = {
    names: [] as Array<[WatchTarget, string | null]>,
    armed: [] as Array<[WatchTarget, boolean]>,
    broken: [] as WatchTarget[],
    onName: (target: WatchTarget, _path: string, name: string | null) => void r.names.push([target, name]),
    onBroken: (target: WatchTarget) => void r.broken.push(target),
    onArmed: (target: WatchTarget, err?: unknown) => void r.armed.push([target, err === undefined]),
  };
  return r;
}

t.test('watches requested/, aborting/ and the spool directory, and says which reported what', async (t) => {
  const paths = openSpool(join(realpathSync(t.testdir()), 'spool'));
  const r = recorder();
  const watchers = new DirectoryWatchers((target) => (target === 'spool' ? paths.root : paths.dirs[target]), r);
  t.teardown(() => watchers.close());
  watchers.watchAll();
  t.strictSame(r.armed, [['requested', true], ['aborting', true], ['spool', true]]);
  writeFileSync(join(paths.dirs.requested, 'a'), '');
  writeFileSync(join(paths.dirs.aborting, 'b'), '');
  mkdirSync(join(paths.root, 'c'));
  await waitFor(() => r.names.length >= 3, 'three events');
  t.ok(r.names.some(([target, name]) => target === 'requested' && name === 'a'));
  t.ok(r.names.some(([target, name]) => target === 'aborting' && name === 'b'));
  t.ok(r.names.some(([target, name]) => target === 'spool' && name === 'c'));
});

t.test('a watch that cannot be set up is reported, and re-armed by rewatch()', async (t) => {
  const sfs = await import('../../../src/spool/fs.js');
  let refuse = true;
  const { DirectoryWatchers: Mocked } = await t.mockImport<typeof import('../../../src/spool/server/directory-watchers.js')>('../../../src/spool/server/directory-watchers.js', {
    '../../../src/spool/fs.js': {
      ...sfs,
      watchDirectory: (dir: string, onName: (name: string | null) => void, onError: (err: Error) => void) => {
        if (refuse && !dir.endsWith('requested') && !dir.endsWith('aborting')) {
          throw Object.assign(new Error('EMFILE: too many open files, watch'), { code: 'EMFILE' });
        }
        return sfs.watchDirectory(dir, onName, onError);
      },
    },
  });
  const paths = openSpool(join(realpathSync(t.testdir()), 'spool'));
  const r = recorder();
  const watchers = new Mocked((target) => (target === 'spool' ? paths.root : paths.dirs[target]), r);
  t.teardown(() => watchers.close());
  watchers.watchAll();
  t.strictSame(r.armed, [['requested', true], ['aborting', true], ['spool', false]], 'the spool directory could not be watched');
  watchers.rewatch();
  t.strictSame(r.armed.slice(3), [['spool', false]], 'still refused: still reported');
  refuse = false;
  watchers.rewatch();
  t.strictSame(r.armed.slice(4), [['spool', true]], 'only the missing watch is re-armed, and it is');
  watchers.rewatch();
  t.equal(r.armed.length, 5, 'a working watch is left alone');
  mkdirSync(join(paths.root, 'seen'));
  await waitFor(() => r.names.some(([target, name]) => target === 'spool' && name === 'seen'), 'the re-armed watch to report');
});

t.test('after close(), rewatch() and watchAll() arm nothing: a late re-arm would leave a watch open for ever', async (t) => {
  const paths = openSpool(join(realpathSync(t.testdir()), 'spool'));
  const r = recorder();
  const watchers = new DirectoryWatchers((target) => (target === 'spool' ? paths.root : paths.dirs[target]), r);
  watchers.watchAll();
  watchers.invalidate('requested');
  watchers.invalidate('aborting');
  watchers.close();
  const armedBefore = r.armed.length;
  watchers.rewatch();
  watchers.watchAll();
  t.equal(r.armed.length, armedBefore, 'no watch was set up after close()');
});
