/**
 * Nothing escapes a shared spool: in the documented layout (docs/operations.md)
 * a group member cannot rename or replace the spool's directories, so cannot
 * swap complete/ for a symlink out of the spool; and a server refuses, in every
 * mode, a spool where someone other than its user and root could. Runs the
 * server and the members as real uids, so it needs root.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openSpool, SPOOL_DIRS, type SpoolDir } from '../../src/spool/layout.js';
import { ROOT, waitFor } from '../fixtures/helpers.js';
import { assertOtherUsersCanRunWq, NEEDS_ROOT, nodeAs, publicTempDir, serveOutcome, wqAs } from '../fixtures/other-users.js';

const GROUP = 4242;
/** The server's dedicated user (`wq` in docs/operations.md) and a member of the group. */
const WQ_USER = { uid: 4300, gid: GROUP };
const MEMBER = { uid: 4301, gid: GROUP };

/** docs/operations.md, "A spool shared by a group of users": modes by directory, all owned by the server's user. */
const DOCUMENTED_MODES: Record<SpoolDir | 'spool', number> = {
  spool: 0o2755,
  requested: 0o3775,
  aborting: 0o3775,
  tmp: 0o3775,
  pending: 0o2755,
  running: 0o2755,
  complete: 0o2755,
  logs: 0o2755,
};

/** Lays a spool out as docs/operations.md says, in a fresh public directory; returns the spool and a directory outside it. */
function documentedSpool(t: Test, modes = DOCUMENTED_MODES): { spool: string; outside: string } {
  const dir = publicTempDir(t, 'wq-layout-');
  const spool = join(dir, 'spool');
  const paths = openSpool(spool);
  for (const path of [paths.root, ...Object.values(paths.dirs), paths.formatFile]) chownSync(path, WQ_USER.uid, GROUP);
  chmodSync(paths.root, modes.spool);
  for (const d of SPOOL_DIRS) chmodSync(paths.dirs[d], modes[d]);
  const outside = join(dir, 'outside');
  mkdirSync(outside, { mode: 0o777 });
  chmodSync(outside, 0o777); // a member's own directory, where they would like results to land
  return { spool, outside };
}

/** A member's attempt to swap complete/ for a symlink to `outside`: true if complete/ is now that symlink. */
function trySwap(spool: string, outside: string): boolean {
  const code = `const fs = require('fs');
    try { fs.renameSync(${JSON.stringify(join(spool, 'complete'))}, ${JSON.stringify(join(spool, 'complete.old'))}); } catch (e) { console.error(e.code); }
    try { fs.symlinkSync(${JSON.stringify(outside)}, ${JSON.stringify(join(spool, 'complete'))}); } catch (e) { console.error(e.code); process.exit(1); }`;
  return nodeAs(MEMBER, code).status === 0;
}

t.test('the documented shared layout: a group member cannot swap complete/ for a symlink, and every result stays in the spool', { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, MEMBER.uid, MEMBER.gid)) return;
  const { spool, outside } = documentedSpool(t);
  const server = await serveOutcome(t, ['--spool', spool, '--exec', 'echo'], WQ_USER);
  t.ok(server.started, `the server (as its own user) serves the documented layout: ${server.stderr()}`);
  if (!server.started) return;
  t.notOk(trySwap(spool, outside), 'the member can neither rename complete/ nor put a symlink in its place');
  t.ok(statSync(join(spool, 'complete')).isDirectory() && !existsSync(join(spool, 'complete.old')), 'complete/ is where it was');
  for (const word of ['one', 'two', 'three']) {
    const r = await wqAs(MEMBER, ['enqueue', '--spool', spool, '--wait', '--timeout', '20', '--', word]);
    t.equal(r.stdout, `${word}\n`, `the member's request ${word} is served: ${r.stderr}`);
  }
  t.strictSame(readdirSync(outside), [], 'no file appeared outside the spool');
  server.stop();
});

t.test('a spool in which others could swap a directory for a symlink is refused at start, in every mode, before anything is written', { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, MEMBER.uid, MEMBER.gid)) return;
  const variants: Record<string, { setUp: (spool: string, outside: string) => void; reason: RegExp }> = {
    'the spool directory group-writable without the sticky bit (2775)': {
      setUp: (spool) => chmodSync(spool, 0o2775),
      reason: /writable by other users and has no sticky bit, so they could rename/,
    },
    'a sticky spool directory (3775) whose complete/ a member owns': {
      setUp: (spool) => {
        chmodSync(spool, 0o3775);
        chownSync(join(spool, 'complete'), MEMBER.uid, GROUP);
      },
      reason: /complete is owned by uid 4301 in the shared directory/,
    },
    'the spool inside a directory a member owns': {
      setUp: (spool) => chownSync(join(spool, '..'), MEMBER.uid, GROUP),
      reason: /is owned by uid 4301, who could rename/,
    },
  };
  for (const [what, { setUp, reason }] of Object.entries(variants)) {
    for (const mode of [['--exec', 'echo'], ['--handler', join(ROOT, 'examples', 'copy-payload.js')]]) {
      const { spool, outside } = documentedSpool(t);
      setUp(spool, outside);
      const before = readdirSync(spool).sort();
      const server = await serveOutcome(t, ['--spool', spool, ...mode], WQ_USER);
      if (server.started) {
        // What the member could then do: swap complete/ out of the spool while the server runs.
        const swapped = trySwap(spool, outside);
        const r = await wqAs(MEMBER, ['enqueue', '--spool', spool, '--wait', '--timeout', '10', '--', 'escaped']);
        t.fail(`${what}, ${mode[0]}: the server started (swap ${swapped ? 'done' : 'failed'}; files outside: ${readdirSync(outside).join(' ') || 'none'}; client: ${r.stderr.trim()})`);
        server.stop();
        continue;
      }
      t.equal(server.code, 3, `${what}, ${mode[0]}: exit 3`);
      t.match(server.stderr(), reason, `${what}, ${mode[0]}: says who could do what`);
      t.strictSame(readdirSync(spool).sort(), before, `${what}, ${mode[0]}: no lock taken, nothing written`);
      t.strictSame(readdirSync(outside), [], `${what}, ${mode[0]}: nothing outside`);
    }
  }
});

t.test('the documented shared layout: a group member gets all of an output over 1 MiB (read before the abort hand-off), and its logs are removed', { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, MEMBER.uid, MEMBER.gid)) return;
  const { spool } = documentedSpool(t);
  // Other users' requests run only under --exec (or --handler): the member supplies seq's arguments.
  const server = await serveOutcome(t, ['--spool', spool, '--exec', 'seq'], WQ_USER);
  t.ok(server.started, `the server serves the documented layout: ${server.stderr()}`);
  if (!server.started) return;
  const args = ['1', '2000000']; // 14.9 MB, far past the 1 MiB a result carries inline
  const expected = execFileSync('seq', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const r = await wqAs(MEMBER, ['enqueue', '--spool', spool, '--wait', '--timeout', '120', '--', ...args]);
  t.equal(r.code, 0, `exit 0: ${r.stderr}`);
  t.equal(r.stdout.length, expected.length, `all ${expected.length} bytes`);
  t.ok(r.stdout === expected, 'the same bytes as seq itself');
  await waitFor(() => readdirSync(join(spool, 'logs')).length === 0 && readdirSync(join(spool, 'complete')).length === 0, 'the server to remove the result and its logs on the hand-off', 60_000);
  server.stop();
});
