import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createOutputLogs, OutputLogError, removeTaskLogs, writePidLog } from '../../src/spool/logs.js';

const ID = '1796661092979985-43086b7d348c';

const ended = (s: NodeJS.WritableStream & { closed: boolean }) => new Promise<void>((resolve) => (s.closed ? resolve() : s.end(resolve)));

t.test('the output logs are created in place of what is there, never written through', async (t) => {
  const logs = t.testdir({ target: 'keep me', [`${ID}.stdout`]: 'an old run\n', [`${ID}.stderr`]: t.fixture('symlink', 'target') });
  const streams = createOutputLogs(logs, ID);
  streams.stdout.write('out\n');
  streams.stderr.write('err\n');
  await Promise.all([ended(streams.stdout), ended(streams.stderr)]);
  t.equal(readFileSync(join(logs, `${ID}.stdout`), 'utf8'), 'out\n', 'a leftover file is replaced');
  t.notOk(lstatSync(join(logs, `${ID}.stderr`)).isSymbolicLink(), 'a planted symlink is replaced by a file');
  t.equal(readFileSync(join(logs, `${ID}.stderr`), 'utf8'), 'err\n');
  t.equal(readFileSync(join(logs, 'target'), 'utf8'), 'keep me', 'and its target is untouched');
});

t.test('a log that cannot be created says which, and leaves the other closed', async (t) => {
  const logs = t.testdir({ [`${ID}.stderr`]: { 'something.txt': 'planted' } });
  const err = t.throws(() => createOutputLogs(logs, ID)) as OutputLogError;
  t.ok(err instanceof OutputLogError);
  t.match(err, { stream: 'stderr', code: 'EEXIST', name: 'OutputLogError' }, 'stderr: a non-empty directory holds its name');
  t.ok(existsSync(join(logs, `${ID}.stdout`)), 'stdout was created first');
  removeTaskLogs(logs, ID);
  t.notOk(existsSync(join(logs, `${ID}.stdout`)), 'removing the logs removes it');
  t.ok(existsSync(join(logs, `${ID}.stderr`, 'something.txt')), 'and leaves the non-empty directory alone');
});

t.test('the pid log is best effort, and goes with the others', async (t) => {
  const logs = t.testdir({ [`${ID}.pid`]: 'stale\n' });
  writePidLog(logs, ID, 4242);
  t.equal(readFileSync(join(logs, `${ID}.pid`), 'utf8'), '4242\n', 'a stale pid file is replaced');
  mkdirSync(join(logs, 'other.pid'));
  writeFileSync(join(logs, 'other.pid', 'x'), '');
  t.doesNotThrow(() => writePidLog(logs, 'other', 1), 'a non-empty directory in the way is no error');
  symlinkSync('nowhere', join(logs, `${ID}.stdout`));
  mkdirSync(join(logs, `${ID}.stderr`));
  removeTaskLogs(logs, ID);
  t.same(['stdout', 'stderr', 'pid'].filter((s) => existsSync(join(logs, `${ID}.${s}`)) || lstatIfAny(join(logs, `${ID}.${s}`))), [], 'a symlink, an empty directory and the pid file are removed');
});

function lstatIfAny(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
