/**
 * The owner rule of a root command server and hard links: where
 * fs.protected_hardlinks is 0, anyone may give root's request file a second
 * name in requested/, and that file is still root's. Root makes the links here
 * (it may, whatever the sysctl), as a member could on such a system.
 */
import { linkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { wq } from '../fixtures/cli.js';
import { NEEDS_ROOT, publicTempDir, serveOutcome } from '../fixtures/other-users.js';

t.test('a root command server never runs a request file twice through a second name (a hard link): a name it cannot trust is rejected', { skip: NEEDS_ROOT }, async (t) => {
  const spool = join(publicTempDir(t, 'wq-link-'), 'spool');
  const first = await wq(['enqueue', '--spool', spool, '--', 'ran-once']);
  const second = await wq(['enqueue', '--spool', spool, '--', 'placeholder']);
  const [id1, id2] = [first.stdout.trim(), second.stdout.trim()];
  t.ok(id1 !== '' && id2 !== '', `two requests queued: ${first.stderr}${second.stderr}`);
  // A second name for root's request, at a later id: what a member would link.
  const requested = join(spool, 'requested');
  unlinkSync(join(requested, id2));
  linkSync(join(requested, id1), join(requested, id2));
  const server = await serveOutcome(t, ['--spool', spool, '--exec', 'echo']);
  t.ok(server.started, `the root --exec server starts: ${server.stderr()}`);
  const results = [await wq(['wait', '--spool', spool, '--timeout', '60', id1]), await wq(['wait', '--spool', spool, '--timeout', '60', id2])];
  const ran = results.filter((r) => r.stdout === 'ran-once\n');
  t.ok(ran.length <= 1, `root's command ran at most once (ran ${ran.length} times)`);
  const rejected = results.filter((r) => r.stdout === '');
  t.ok(rejected.length >= 1, 'a name of the linked file was rejected');
  for (const r of rejected) {
    t.not(r.code, 0, 'a rejected name fails');
    t.match(r.stderr, /has 2 names \(hard links\)/, `and says why: ${r.stderr}`);
  }
  server.stop();
});

t.test('a root command server runs its own requests as before: a publish, whose temp name goes at once, is not a second name', { skip: NEEDS_ROOT }, async (t) => {
  const spool = join(publicTempDir(t, 'wq-link-'), 'spool');
  const server = await serveOutcome(t, ['--spool', spool, '--exec', 'echo']);
  t.ok(server.started, `the server starts: ${server.stderr()}`);
  for (const word of ['one', 'two', 'three']) {
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', '60', '--', word]);
    t.equal(r.stdout, `${word}\n`, `${word} runs: ${r.stderr}`);
  }
  server.stop();
});
