/**
 * The layout that shows the architecture, enforced: the CLI talks to a queue
 * through the queue interface (src/queue/), the client, the server's public
 * API and the backend factory (src/backends.ts), never to the spool's modules
 * directly; and the interface itself touches no storage: src/queue/ imports
 * neither node:fs nor a spool module (nor a Redis client).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every module specifier a TypeScript file imports or re-exports, statically or with import(). */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  const patterns = [/^\s*(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"]+)['"]/gms, /^\s*import\s*['"]([^'"]+)['"]/gm, /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1]!);
  return found;
}

/** The .ts files of a directory of src/, with what each imports, as paths relative to src/ (packages as they are). */
function modulesIn(dir: string): Array<{ file: string; imports: string[] }> {
  const abs = join(ROOT, 'src', dir);
  return readdirSync(abs)
    .filter((name) => name.endsWith('.ts'))
    .map((name) => {
      const file = join(abs, name);
      const imports = importsOf(readFileSync(file, 'utf8')).map((spec) => (spec.startsWith('.') ? relative(join(ROOT, 'src'), resolve(abs, spec)) : spec));
      return { file: relative(ROOT, file), imports };
    });
}

t.test('importsOf finds static, re-exported, side-effect and dynamic imports', async (t) => {
  const source = [
    "import { a } from '../spool/layout.js';",
    "import type {\n  B,\n} from './b.js';",
    "export { c } from 'node:fs';",
    "import 'side-effect';",
    "const m = await import('../spool/follow.js');",
  ].join('\n');
  t.same(importsOf(source).sort(), ['../spool/follow.js', '../spool/layout.js', './b.js', 'node:fs', 'side-effect'].sort());
});

t.test('src/cli/ imports no module of src/spool/: it goes through the queue interface', async (t) => {
  const cli = modulesIn('cli');
  t.ok(cli.length > 5, 'the CLI modules are found');
  for (const { file, imports } of cli) {
    const spool = imports.filter((spec) => spec.startsWith('spool/'));
    t.same(spool, [], `${file} imports no spool module`);
  }
});

t.test('src/queue/ imports neither node:fs, nor the spool, nor a Redis client', async (t) => {
  const queue = modulesIn('queue');
  t.ok(queue.length >= 3, 'the interface modules are found');
  for (const { file, imports } of queue) {
    const storage = imports.filter((spec) => /^(node:)?fs(\/|$)/.test(spec) || spec.startsWith('spool/') || /redis|bullmq/i.test(spec));
    t.same(storage, [], `${file} imports no storage`);
  }
});

t.test('the client reaches the spool only through the queue interface and its factory', async (t) => {
  const client = importsOf(readFileSync(join(ROOT, 'src', 'client.ts'), 'utf8')).filter((spec) => spec.startsWith('./spool/') || /^(node:)?fs(\/|$)/.test(spec));
  t.same(client, [], 'src/client.ts imports no spool module and no node:fs');
});

/** Every .ts file under a directory of src/, recursively, as paths relative to the repository. */
function filesUnder(dir: string): string[] {
  const abs = join(ROOT, 'src', dir);
  return readdirSync(abs, { withFileTypes: true }).flatMap((entry) => {
    const rel = join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(rel);
    return entry.name.endsWith('.ts') ? [join('src', rel)] : [];
  });
}

t.test('one door to the file system: no spool module but spool/fs.ts and spool/fs/ calls node:fs itself (types aside)', async (t) => {
  const files = filesUnder('spool');
  t.ok(files.length > 30, 'the spool modules are found, src/spool/server/ too');
  const door = (file: string): boolean => file === join('src', 'spool', 'fs.ts') || file.startsWith(join('src', 'spool', 'fs') + '/');
  for (const file of files.filter((f) => !door(f))) {
    const source = readFileSync(join(ROOT, file), 'utf8');
    // A value import (not `import type`) of node:fs or node:fs/promises, or a dynamic one.
    const direct = [...source.matchAll(/^\s*import\s+(?!type\b)[^;]*?\sfrom\s*['"](?:node:)?fs(?:\/promises)?['"]|\bimport\(\s*['"](?:node:)?fs(?:\/promises)?['"]\s*\)/gm)];
    t.same(direct.map((m) => m[0].trim()), [], `${file} reaches node:fs only through spool/fs.ts`);
  }
  const planted = "import { readFileSync } from 'node:fs';\nimport type { Stats } from 'node:fs';";
  t.equal([...planted.matchAll(/^\s*import\s+(?!type\b)[^;]*?\sfrom\s*['"](?:node:)?fs(?:\/promises)?['"]/gm)].length, 1, 'the check sees a value import and lets a type import pass');
});
