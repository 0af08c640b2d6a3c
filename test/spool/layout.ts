import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpoolError } from '../../src/errors.js';
import { entryPath, FORMAT_FILE, openSpool, parseFormat, PROTOCOL_VERSION, REQUEST_STATES, SPOOL_DIRS, spoolPaths } from '../../src/spool/layout.js';

const FORMAT_TEXT = `spool-workqueue protocol ${PROTOCOL_VERSION}\n`;

t.test('openSpool creates the spool, every directory and the format file', async (t) => {
  const root = join(t.testdir(), 'a', 'b', 'spool');
  const paths = openSpool(root);
  t.equal(paths.root, root);
  for (const dir of SPOOL_DIRS) {
    t.ok(statSync(join(root, dir)).isDirectory(), `${dir}/ exists`);
    t.equal(paths.dirs[dir], join(root, dir));
  }
  t.strictSame(readdirSync(root).sort(), [...SPOOL_DIRS, FORMAT_FILE].sort(), 'nothing else is created');
  t.equal(readFileSync(join(root, FORMAT_FILE), 'utf8'), FORMAT_TEXT);
  t.equal(parseFormat(readFileSync(paths.formatFile, 'utf8')), PROTOCOL_VERSION);
  t.strictSame([...REQUEST_STATES], ['requested', 'pending', 'running', 'complete'], 'states in flow order');
  t.equal(entryPath(paths, 'pending', '1795366421947895-8d42b22ad816'), join(root, 'pending', '1795366421947895-8d42b22ad816'));
});

t.test('opening again keeps what is there', async (t) => {
  const root = t.testdir();
  const paths = openSpool(root);
  writeFileSync(join(paths.dirs.pending, '1795366421947895-8d42b22ad816'), 'work');
  const again = openSpool(root);
  t.strictSame(again, paths);
  t.equal(readFileSync(join(root, 'pending', '1795366421947895-8d42b22ad816'), 'utf8'), 'work', 'queued work survives');
  t.equal(readFileSync(join(root, FORMAT_FILE), 'utf8'), FORMAT_TEXT);
  t.doesNotThrow(() => openSpool(root, { create: false }), 'an existing spool opens without create');
});

t.test('a missing directory is recreated, or reported without create', async (t) => {
  const root = t.testdir();
  openSpool(root);
  rmdirSync(join(root, 'aborting'));
  t.throws(() => openSpool(root, { create: false }), { name: 'SpoolError', message: /aborting/ });
  openSpool(root);
  t.ok(statSync(join(root, 'aborting')).isDirectory(), 'recreated');
});

t.test('a format file naming another version is refused and left alone', async (t) => {
  for (const text of [`spool-workqueue protocol ${PROTOCOL_VERSION + 1}\n`, 'spool-workqueue protocol 0\n']) {
    const root = t.testdir({ format: text });
    t.throws(() => openSpool(root), SpoolError, JSON.stringify(text));
    t.equal(readFileSync(join(root, 'format'), 'utf8'), text, 'not rewritten');
    t.strictSame(readdirSync(root), ['format'], 'no directories made in a refused spool');
  }
  const root = t.testdir({ format: `spool-workqueue protocol ${PROTOCOL_VERSION + 1}\n` });
  t.throws(() => openSpool(root), { code: 'ERR_SPOOL', message: /version 2/ });
});

t.test('a format file that is not ours is refused', async (t) => {
  for (const text of ['', 'hello\n', '{"version":1}', 'spool-workqueue protocol\n', 'Spool-Workqueue protocol 1\n']) {
    const root = t.testdir({ format: text });
    t.throws(() => openSpool(root), SpoolError, JSON.stringify(text));
    t.throws(() => openSpool(root, { create: false }), SpoolError, `${JSON.stringify(text)} without create`);
  }
});

t.test('create: false on a missing spool throws and creates nothing', async (t) => {
  const parent = t.testdir();
  const root = join(parent, 'nope');
  t.throws(() => openSpool(root, { create: false }), { name: 'SpoolError', code: 'ERR_SPOOL', message: /does not exist/ });
  t.strictSame(readdirSync(parent), [], 'nothing created');
  const file = join(parent, 'file');
  writeFileSync(file, '');
  t.throws(() => openSpool(file, { create: false }), SpoolError, 'a file is not a spool');
});

t.test('directories are created with the requested mode (less the umask)', async (t) => {
  const root = join(t.testdir(), 'spool');
  const umask = process.umask();
  openSpool(root, { dirMode: 0o750 });
  t.equal(statSync(join(root, 'requested')).mode & 0o777, 0o750 & ~umask);
  mkdirSync(join(root, 'extra')); // a stranger's directory does not bother anyone
  t.doesNotThrow(() => openSpool(root));
});

t.test('spoolPaths only computes names', async (t) => {
  const root = join(t.testdir(), 'never-made');
  const paths = spoolPaths(root);
  t.equal(paths.lockFile, join(root, 'server.lock'));
  t.equal(paths.formatFile, join(root, 'format'));
  t.throws(() => statSync(root), { code: 'ENOENT' });
});

t.test('parseFormat', async (t) => {
  t.equal(parseFormat('spool-workqueue protocol 1\n'), 1);
  t.equal(parseFormat('spool-workqueue protocol 1'), 1, 'newline optional');
  t.equal(parseFormat('spool-workqueue protocol 17\n'), 17);
  t.equal(parseFormat('spool-workqueue protocol 1  \n'), 1, 'trailing blanks');
  for (const text of ['', 'spool-workqueue protocol ', 'spool-workqueue protocol 0', 'spool-workqueue protocol -1', 'spool-workqueue protocol 1.5', 'spool-workqueue protocol one', 'protocol 1', ' spool-workqueue protocol 1']) {
    t.equal(parseFormat(text), undefined, JSON.stringify(text));
  }
});
