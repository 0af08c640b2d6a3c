#!/usr/bin/env node
// Writes docs/cli.md from the `--help` of every wq command, so the reference
// cannot drift from the CLI. `npm run docs` runs it; a test fails when the file
// is stale. Usage: node scripts/cli-doc.js [--check]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const wq = `${root}bin/wq`;
const commands = ['serve', 'enqueue', 'wait', 'abort', 'status'];

function help(args) {
  const r = spawnSync(process.execPath, [wq, ...args, '--help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '100' } });
  if (r.status !== 0) throw new Error(`wq ${args.join(' ')} --help exited ${r.status}: ${r.stderr}`);
  return r.stdout.trimEnd();
}

export function render() {
  const sections = commands.map((c) => `## \`wq ${c}\`\n\n\`\`\`\n${help([c])}\n\`\`\`\n`);
  return `# \`wq\` command reference

Generated from \`wq --help\` by \`npm run docs\`; a test fails if it is out of date.
The on-disk format is in [protocol.md](protocol.md); running the server as a service in
[operations.md](operations.md).

## Spool

Every command works on one spool directory: \`--spool DIR\`, else \`$WQ_SPOOL\`, else
\`$XDG_STATE_HOME/wq/spool\` (\`~/.local/state/wq/spool\`; a relative \`$XDG_STATE_HOME\` is ignored, as
the XDG Base Directory spec says). It is created on first use.

## Exit codes

| code | meaning |
|---:|---|
| 0 | success; with \`--wait\`, the command's own exit code passes through (a command killed by signal N exits 128+N); \`wq wait\` with several ids exits with the first non-zero code in the order given |
| 1 | the task failed: the handler threw, or the command could not be started; or the command's output was lost: it went past the server's \`--max-output\`, filled the spool's disk, could not be written to its log (\`logs/\` unwritable), or its log was gone or unreadable when the result was claimed, or it was too long for \`--json\` (a message says so, even with \`-q\`); for \`wq abort\`, the server refused an abort (another user's request on a shared spool) or did not act on it within 10 s |
| 2 | usage: bad flags or arguments (\`wq\` alone prints its help on stderr), or a \`--handler\` module that does not load |
| 3 | the spool cannot be used (not a directory, permission denied, a read-only or full file system, another version: the message names the spool and the cause), another server holds it, or the metrics address is unusable |
| 4 | no such request in the spool (never enqueued, aborted, or its result already claimed); \`wq abort\` of such an id still files the abort, kept 10 minutes |
| 124 | a deadline passed (\`--timeout\` or \`--run-timeout\`); the request was aborted (left alone by \`wq wait --keep\`) and the message says which |
| 128+N | stopped by signal N while waiting (129 SIGHUP, 130 SIGINT/Ctrl-C, 143 SIGTERM); the request was aborted (or left queued with \`--detach-on-signal\` or \`wq wait --keep\`) and stderr says which |
| 141 | stdout or stderr was closed by its reader (\`wq … \| head -1\`), as a filter killed by SIGPIPE: no message, except that a request being waited for is aborted (as at Ctrl-C) and stderr says so |

## \`wq\`

\`\`\`
${help([])}
\`\`\`

${sections.join('\n')}`;
}

const text = render();
const path = `${root}docs/cli.md`;
if (process.argv.includes('--check')) {
  if (readFileSync(path, 'utf8') !== text) {
    process.stderr.write('docs/cli.md is out of date: run `npm run docs`\n');
    process.exit(1);
  }
} else {
  writeFileSync(path, text);
}
