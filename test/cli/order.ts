/**
 * stdout and stderr in the order the task wrote them, where wq's own stdout
 * and stderr lead to one file (`>out 2>&1`): exactly with `enqueue --wait`
 * (the task's stderr is joined to its stdout), in the order the server read
 * them for a later `wq wait`; and apart, as ever, where they lead apart or for
 * --json. Black-box: the real bin/wq and `wq serve`, real files.
 */
import { closeSync, openSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spawnWq, startCliServer, waitFor } from '../fixtures/helpers.js';
import { exited, wq } from '../fixtures/cli.js';
import { sq } from '../fixtures/gates.js';

const ONE_TWO_THREE = ['sh', '-c', 'echo 1; echo 2 >&2; echo 3'];

async function served(t: Test): Promise<{ dir: string; spool: string }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  return { dir, spool };
}

/** Runs `wq ARGS` with its stdout and stderr both on one file (a shell's `>file 2>&1`); returns its exit code and the file. */
async function wqToOneFile(file: string, args: string[]): Promise<{ code: number | null; text: string }> {
  const fd = openSync(file, 'w');
  try {
    const child = spawnWq(args, { stdio: ['ignore', fd, fd] });
    const { code } = await exited(child);
    return { code, text: readFileSync(file, 'utf8') };
  } finally {
    closeSync(fd);
  }
}

t.test('enqueue --wait to one file: the task’s output in the order it wrote it', async (t) => {
  const { dir, spool } = await served(t);
  for (let i = 0; i < 3; i++) {
    const r = await wqToOneFile(join(dir, `both.${i}`), ['enqueue', '--spool', spool, '--wait', '--', ...ONE_TWO_THREE]);
    t.strictSame(r, { code: 0, text: '1\n2\n3\n' }, `run ${i + 1}: 1 2 3, not 1 3 2`);
  }
  const followed = await wqToOneFile(join(dir, 'followed'), ['enqueue', '--spool', spool, '--wait', '--follow', '--', ...ONE_TWO_THREE]);
  t.strictSame(followed, { code: 0, text: '1\n2\n3\n' }, '--follow too');
});

t.test('enqueue --wait to two places: stdout and stderr stay apart; --json keeps them apart too', async (t) => {
  const { dir, spool } = await served(t);
  const apart = await wq(['enqueue', '--spool', spool, '--wait', '--', ...ONE_TWO_THREE]);
  t.strictSame(apart, { code: 0, signal: null, stdout: '1\n3\n', stderr: '2\n' });
  const json = await wqToOneFile(join(dir, 'json'), ['enqueue', '--spool', spool, '--wait', '--json', '--', ...ONE_TWO_THREE]);
  t.equal(json.code, 0);
  t.match(JSON.parse(json.text), { stdout: '1\n3\n', stderr: '2\n' }, 'the JSON object has both streams, apart');
});

t.test('wq wait later, to one file: in the order the server read them; to two places: apart', async (t) => {
  const { dir, spool } = await served(t);
  const logs = join(spool, 'logs');
  // Each write waits until the server has logged the one before, so the order the server read is the order written.
  const logged = (suffix: string): string => `i=0; until [ -s "$(ls ${sq(logs)}/*${suffix})" ] || [ $i -ge 1000 ]; do sleep 0.01; i=$((i+1)); done`;
  const script = `echo 1; ${logged('.stdout')}; echo 2 >&2; ${logged('.stderr')}; echo 3`;
  const enqueue = async (): Promise<string> => {
    const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', 'sh', '-c', script]);
    t.equal(r.code, 0);
    const id = r.stdout.trim();
    await waitFor(() => readdirSync(join(spool, 'complete')).includes(id), 'the result');
    return id;
  };
  const together = await wqToOneFile(join(dir, 'both'), ['wait', '--spool', spool, await enqueue()]);
  t.strictSame(together, { code: 0, text: '1\n2\n3\n' });
  const apart = await wq(['wait', '--spool', spool, await enqueue()]);
  t.strictSame(apart, { code: 0, signal: null, stdout: '1\n3\n', stderr: '2\n' });
});
