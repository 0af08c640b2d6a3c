/**
 * The package as a user gets it: `npm pack`, installed into a fresh project,
 * imported by a strict TypeScript program that uses every export (compiled with
 * and without @types/node, declarations checked: no skipLibCheck), and its
 * `wq` bin run. Offline: the tarball is unpacked the way npm would install it,
 * and its dependencies are linked from this repository's node_modules.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import t from 'tap';
import { ROOT } from './fixtures/helpers.js';

const CONSUMER = join(ROOT, 'test', 'fixtures', 'consumer');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string> };
/** What `npm pack` must put in the tarball, besides what `files` lists. */
const MUST_SHIP = ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'bin/wq', 'dist/index.js', 'dist/index.d.ts', 'dist/cli-bundle/wq.cjs'];

function run(command: string, args: string[], options: SpawnSyncOptions = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 120_000, ...options });
  if (r.error) throw r.error;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** npm, as the test runner was started with it (npm test), else from PATH. */
function npm(args: string[], cwd: string): ReturnType<typeof run> {
  const env = { ...process.env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  const cli = process.env.npm_execpath;
  return cli !== undefined && /npm-cli\.js$/.test(cli) ? run(process.execPath, [cli, ...args], { cwd, env }) : run('npm', args, { cwd, env });
}

/** `npm pack` into `dir` (without rebuilding: the tests run on the build); returns the tarball and the files in it. */
function pack(dir: string): { tarball: string; files: string[] } {
  const r = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
  if (r.status !== 0) throw new Error(`npm pack failed (${r.status}): ${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  return { tarball: join(dir, info!.filename), files: info!.files.map((f) => f.path) };
}

/**
 * Installs the tarball into `project` as npm would: unpacked into
 * node_modules/<name>, its bins linked into node_modules/.bin and made
 * executable; each dependency is a link to this repository's copy.
 */
function install(tarball: string, project: string): string {
  const target = join(project, 'node_modules', PKG.name);
  mkdirSync(target, { recursive: true });
  const r = run('tar', ['-xzf', tarball, '-C', target, '--strip-components=1']);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  const installed = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; bin: Record<string, string> };
  for (const dep of Object.keys(installed.dependencies)) {
    const link = join(project, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), link, 'dir');
  }
  mkdirSync(join(project, 'node_modules', '.bin'), { recursive: true });
  for (const [name, path] of Object.entries(installed.bin)) {
    chmodSync(join(target, path), 0o755);
    symlinkSync(join('..', PKG.name, path), join(project, 'node_modules', '.bin', name));
  }
  return target;
}

/** The consumer's tsconfig: strict, declarations checked, with or without @types/node. */
function tsconfig(withNodeTypes: boolean): Record<string, unknown> {
  return {
    compilerOptions: {
      target: 'es2022',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      noImplicitOverride: true,
      skipLibCheck: false,
      // Without @types/node, AbortSignal comes from the DOM lib, as in a project that targets both.
      ...(withNodeTypes ? { lib: ['es2022'], types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')], noEmit: true } : { lib: ['es2022', 'dom'], types: [], outDir: 'out' }),
    },
    files: ['consumer.ts'],
  };
}

t.test('the packed package installs, type-checks in a strict project and runs', async (t) => {
  t.ok(existsSync(join(ROOT, 'dist', 'index.d.ts')), 'the package is built (npm test builds it first)');
  const dir = realpathSync(t.testdir({ packed: {}, project: {}, spool: {} }));
  const { tarball, files } = pack(join(dir, 'packed'));
  for (const file of MUST_SHIP) t.ok(files.includes(file), `the tarball holds ${file}`);
  t.notOk(files.some((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.v8cache')), 'no sources, tests or code caches');

  const project = join(dir, 'project');
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const installed = install(tarball, project);
  const license = join(installed, 'LICENSE');
  t.match(existsSync(license) ? readFileSync(license, 'utf8') : '', /^BSD 3-Clause License\n/, 'the license text ships');

  await t.test('its wq bin runs', async (t) => {
    const path = [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter);
    const r = run(join(project, 'node_modules', '.bin', 'wq'), ['--version'], { env: { ...process.env, PATH: path } });
    t.equal(r.stderr, '');
    t.equal(r.stdout, `${PKG.version}\n`);
    t.equal(r.status, 0);
  });

  const source = readFileSync(join(CONSUMER, 'consumer.ts'), 'utf8');
  copyFileSync(join(CONSUMER, 'consumer.ts'), join(project, 'consumer.ts'));
  copyFileSync(join(CONSUMER, 'run.mjs'), join(project, 'run.mjs'));

  await t.test('the consumer uses every export', async (t) => {
    const index = readFileSync(join(installed, 'dist', 'index.d.ts'), 'utf8');
    const names = [...index.matchAll(/export (?:type )?\{([^}]*)\}/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()).filter(Boolean));
    t.ok(names.length > 40, `dist/index.d.ts exports ${names.length} names`);
    for (const name of names) t.match(source, new RegExp(`\\b${name}\\b`), `consumer.ts uses ${name}`);
  });

  for (const withNodeTypes of [false, true]) {
    await t.test(`strict tsc ${withNodeTypes ? 'with' : 'without'} @types/node`, async (t) => {
      const config = `tsconfig.${withNodeTypes ? 'node' : 'plain'}.json`;
      writeFileSync(join(project, config), JSON.stringify(tsconfig(withNodeTypes), null, 2));
      const r = run(process.execPath, [TSC, '-p', config], { cwd: project });
      t.equal(r.stdout + r.stderr, '', 'no type errors');
      t.equal(r.status, 0);
    });
  }

  await t.test('the compiled consumer imports the installed package and runs', async (t) => {
    const r = run(process.execPath, ['run.mjs', join(dir, 'spool')], { cwd: project });
    t.equal(r.stderr, '');
    t.equal(r.stdout, 'peek: undefined; timed out (total) after 0 ms, aborted: false; aborted: true\n');
    t.equal(r.status, 0);
  });
});
