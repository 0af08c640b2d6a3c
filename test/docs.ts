import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from './fixtures/helpers.js';

t.test('docs/cli.md matches the --help of every command', async (t) => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'cli-doc.js'), '--check'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});

t.test('the README names the install, serve and test commands, and every runtime dependency', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.match(readme, /npm ci/);
  t.match(readme, /wq serve/);
  t.match(readme, /npm test/);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies)) t.ok(readme.includes(`\`${dep}\``), `README explains why ${dep} is a dependency`);
});

t.test('src/version.ts matches package.json', async (t) => {
  const { VERSION } = await import('../src/version.js');
  t.equal(VERSION, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
});

t.test('.ci/run runs exactly the README test command after npm ci', async (t) => {
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
  t.match(ci, /npm ci\nnpm test\n/);
});
