import t from 'tap';
import { GroupCommit } from '../../src/spool/group-commit.js';

t.test('what is added in one turn of the event loop is committed together, and what arrives during a commit joins the next', async (t) => {
  const batches: number[][] = [];
  let release: () => void = () => {};
  const commits = new GroupCommit<number>(async (batch) => {
    batches.push([...batch]);
    if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
  });
  t.notOk(commits.busy, 'idle at first');
  commits.add(1);
  commits.add(2);
  t.ok(commits.busy, 'a commit is due');
  t.strictSame(batches, [], 'nothing is committed in the turn items are added');
  await new Promise((resolve) => setImmediate(resolve));
  t.strictSame(batches, [[1, 2]], 'one commit for the turn');
  commits.add(3);
  commits.add(4);
  t.equal(commits.find((n) => n === 1), 1, 'an item being committed is found');
  t.equal(commits.find((n) => n === 4), 4, 'a waiting item is found');
  release();
  await commits.idle();
  t.strictSame(batches, [[1, 2], [3, 4]], 'the items added during the first commit share the second');
  t.notOk(commits.busy, 'idle again');
  t.equal(commits.find(() => true), undefined, 'nothing held');
});

t.test('items handed back go first in the next commit; stop() starts no further commit', async (t) => {
  const batches: string[][] = [];
  const commits = new GroupCommit<string>(async (batch) => {
    batches.push([...batch]);
    if (batches.length === 1) {
      commits.add('late');
      commits.retry(batch.filter((item) => item !== 'ok'));
    }
  });
  commits.add('ok');
  commits.add('failed');
  await commits.idle();
  t.strictSame(batches, [['ok', 'failed'], ['failed', 'late']], 'the handed-back item is committed again, ahead of one added after it');
  const stopped = new GroupCommit<string>(async (batch) => void batches.push([...batch]));
  stopped.stop();
  stopped.add('never');
  await stopped.idle();
  t.equal(batches.length, 2, 'a stopped group commit commits nothing');
  t.equal(stopped.find(() => true), 'never', 'the item stays uncommitted');
});
