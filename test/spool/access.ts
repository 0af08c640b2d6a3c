import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { MAX_SYMLINK_HOPS, pathPairs } from '../../src/spool/access.js';

t.test('pathPairs: follows each symlink into its target, and pairs every directory with its entry on the way', async (t) => {
  const dir = realpathSync(t.testdir());
  mkdirSync(join(dir, 'b', 'real'), { recursive: true });
  mkdirSync(join(dir, 'a'));
  symlinkSync(join(dir, 'b'), join(dir, 'link2'));
  symlinkSync('../link2/real', join(dir, 'a', 'link'));
  const { pairs, complete } = pathPairs(join(dir, 'a', 'link', 'spool'));
  t.notOk(complete, 'the spool does not exist yet');
  const names = pairs.map(([parent, child]) => `${parent.path} > ${child.path}`);
  for (const pair of [
    `${dir} > ${join(dir, 'a')}`,
    `${join(dir, 'a')} > ${join(dir, 'a', 'link')}`,
    `${dir} > ${join(dir, 'link2')}`,
    `${dir} > ${join(dir, 'b')}`,
    `${join(dir, 'b')} > ${join(dir, 'b', 'real')}`,
  ]) t.ok(names.includes(pair), pair);
  t.notOk(names.some((n) => n.includes(`${join(dir, 'a', 'link')} >`)), 'never a symlink as a directory: its target is walked instead');
});

t.test(`pathPairs: a symlink loop stops after ${MAX_SYMLINK_HOPS} hops`, async (t) => {
  const dir = realpathSync(t.testdir());
  symlinkSync(join(dir, 'y'), join(dir, 'x'));
  symlinkSync(join(dir, 'x'), join(dir, 'y'));
  t.throws(() => pathPairs(join(dir, 'x', 'spool')), { code: 'ERR_SPOOL', message: /more than 40 symbolic links/ });
});
