/**
 * The CLI's contract with scripts: usage errors exit 2 and enqueue nothing,
 * unknown ids exit 4, aborts, and --help for every command.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { BLOCKER, release, wq } from '../fixtures/cli.js';
import { readLines } from '../fixtures/processes.js';

const SOME_ID = '1763830000000000-0123456789ab';

t.test('usage errors exit 2 with a message and enqueue nothing', async (t) => {
  const dir = realpathSync(t.testdir({ 'handler.mjs': 'export default () => 1;\n' }));
  const spool = join(dir, 'spool');
  const cases: Array<[string, string[], RegExp]> = [
    ['no command', ['enqueue', '--spool', spool], /nothing to run/],
    ['no command after --', ['enqueue', '--spool', spool, '--wait', '--'], /nothing to run/],
    ['unknown flag', ['enqueue', '--spool', spool, '--bogus', '--', 'true'], /unknown option/],
    ['unknown serve flag', ['serve', '--spool', spool, '--bogus'], /unknown option/],
    ['bad number for --timeout', ['enqueue', '--spool', spool, '--wait', '--timeout', 'soon', '--', 'true'], /soon/],
    ['negative --timeout', ['enqueue', '--spool', spool, '--wait', '--timeout=-1', '--', 'true'], /-1/],
    ['a --run-timeout too long to count in ms', ['enqueue', '--spool', spool, '--run-timeout', '1e306', '--', 'true'], /expected a number of seconds >= 0, got "1e306"/],
    ['a --rescan-interval longer than a timer can hold', ['serve', '--spool', spool, '--rescan-interval', '2592000'], /expected a number of seconds from 0.1 to 2147483.647, got "2592000"/],
    ['--timeout without --wait', ['enqueue', '--spool', spool, '--timeout', '5', '--', 'true'], /--wait/],
    ['--data not JSON', ['enqueue', '--spool', spool, '--data', '{a:1}'], /JSON/],
    ['--data with a command', ['enqueue', '--spool', spool, '--data', '{"a":1}', '--', 'true'], /--data/],
    ['wait on a malformed id', ['wait', '--spool', spool, 'not-an-id'], /not a request id/],
    ['abort of a malformed id', ['abort', '--spool', spool, '../../etc/passwd'], /not a request id/],
    ['wait without an id', ['wait', '--spool', spool], /missing required argument/],
    ['--max-tasks 0', ['serve', '--spool', spool, '--max-tasks', '0'], /--max-tasks|>= 1/],
    ['--handler with --exec', ['serve', '--spool', spool, '--handler', join(dir, 'handler.mjs'), '--exec', 'echo'], /cannot be used with/],
    ['unknown command', ['frobnicate'], /unknown command/],
  ];
  for (const [what, args, message] of cases) {
    const r = await wq(args);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: says what is wrong`);
    t.equal(r.stdout, '', `${what}: nothing on stdout`);
  }
  t.same(spoolContents(spool).requested, [], 'nothing was enqueued');
  t.notOk(existsSync(join(spool, 'server.lock')), 'no server was left running');
});

t.test('an --exec command that does not split into words: exit 2, and the message says why', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const cases: Array<[string, RegExp]> = [
    ["'unterminated", /--exec.*unterminated ' quote in "'unterminated"/],
    ['rsync "-a', /--exec.*unterminated " quote in "rsync "-a"/],
    ['', /--exec.*expected a command/],
    ['""', /--exec.*expected a command/],
  ];
  for (const [command, message] of cases) {
    const r = await wq(['serve', '--spool', spool, '--exec', command]);
    t.equal(r.code, 2, `--exec ${JSON.stringify(command)}: exit 2`);
    t.match(r.stderr, message, `--exec ${JSON.stringify(command)}: says what is wrong`);
  }
  t.notOk(existsSync(join(spool, 'server.lock')), 'no server started');
});

t.test('every numeric option refuses a value out of its range, with the one message', async (t) => {
  const dir = realpathSync(t.testdir({ file: '' }));
  // A spool no command can use: an option taken by mistake fails fast, with another exit code.
  const spool = join(dir, 'file', 'spool');
  const ID = '1763830000000000-0123456789ab';
  const cases: Array<[string[], string, string]> = [
    [['serve'], '--max-tasks', '0'],
    [['serve'], '--max-tasks', '1.5'],
    [['serve'], '--max-load', '0'],
    [['serve'], '--max-output', '0'],
    [['serve'], '--max-output', '2G'],
    [['serve'], '--grace', '-1'],
    [['serve'], '--kill-grace', 'soon'],
    [['serve'], '--rescan-interval', '0'],
    [['serve'], '--rescan-interval', '0.01'],
    [['serve'], '--result-ttl', '0'],
    [['serve'], '--metrics-port', '65536'],
    [['enqueue', '--wait'], '--timeout', '0x10'],
    [['enqueue'], '--run-timeout', '-0.5'],
    [['wait', ID], '--timeout', 'Infinity'],
  ];
  for (const [command, option, value] of cases) {
    const r = await wq([...command, '--spool', spool, `${option}=${value}`, ...(command[0] === 'enqueue' ? ['--', 'true'] : [])]);
    const what = `${command[0]} ${option} ${value}`;
    t.equal(r.code, 2, `${what}: exit 2`);
    const v = escapeRegExp(value);
    const template = `^wq: error: option '(-[a-z], )?${option} <\\w+>' argument '${v}' is invalid\\. expected an? .+ (from \\S+ to \\S+|>= \\S+|> \\S+), got "${v}"\\n`;
    t.match(r.stderr, new RegExp(template), `${what}: the one message`);
  }
});

t.test('wq wait on a well-formed id that is in no state exits 4', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const r = await wq(['wait', '--spool', spool, SOME_ID]);
  t.equal(r.code, 4);
  t.match(r.stderr, /unknown request/);
  t.equal(r.stdout, '');
});

t.test('wq abort of a queued request: it never runs and waiting for it ends with exit 4', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--max-tasks', '1']);
  const enqueue = async (argv: string[]): Promise<string> => (await wq(['enqueue', '--spool', spool, '--', ...argv], { cwd: dir })).stdout.trim();
  const blockerId = await enqueue(['sh', '-c', BLOCKER]);
  await waitFor(() => readLines(join(dir, 'blocker.pids')).length === 1, 'the blocking request to run');
  const victim = await enqueue(['sh', '-c', 'touch victim-ran']);
  await waitFor(() => spoolContents(spool).pending.includes(victim), 'the victim to be queued');

  const waiting = wq(['wait', '--spool', spool, victim]);
  const aborted = await wq(['abort', '--spool', spool, victim]);
  t.same([aborted.code, aborted.stdout, aborted.stderr], [0, '', ''], 'wq abort succeeds quietly');
  const w = await waiting;
  t.equal(w.code, 4, 'the wait ends: the request is unknown now');
  t.match(w.stderr, /unknown request/);

  release(dir);
  t.equal((await wq(['wait', '--spool', spool, blockerId])).code, 0);
  const after = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'after'], { cwd: dir });
  t.same([after.code, after.stdout], [0, 'after\n'], 'the queue moved on past it');
  t.notOk(existsSync(join(dir, 'victim-ran')), 'the aborted request never ran');
  t.same(spoolContents(spool), { requested: [], pending: [], running: [], complete: [], aborting: [], tmp: [] });
});

t.test("--json's shape for a command's output is in --help: a string, or { base64 } when it is not UTF-8", async (t) => {
  for (const command of ['enqueue', 'wait']) {
    const r = await wq([command, '--help']);
    t.match(r.stdout.replace(/\s+/g, ' '), '"stdout" and "stderr" are strings when they are valid UTF-8, else {"base64": "…"}', `wq ${command} --help`);
  }
});

t.test('wq with no command prints its help on stderr and exits 2, as a usage error; wq help exits 0', async (t) => {
  const bare = await wq([]);
  t.equal(bare.code, 2, 'exit 2');
  t.match(bare.stderr, /^Usage: wq \[options\] \[command\]/, 'the help, on stderr');
  t.match(bare.stderr, /Commands:/);
  t.equal(bare.stdout, '', 'nothing on stdout');
  const help = await wq(['help']);
  t.equal(help.code, 0, 'wq help: exit 0');
  t.match(help.stdout, /^Usage: wq/, 'wq help: on stdout');
});

t.test('--help of every command exits 0 and lists its options', async (t) => {
  const helps: Array<[string[], string[]]> = [
    [[], ['serve', 'enqueue', 'wait', 'abort', 'Exit codes']],
    [['serve'], ['--spool', '--max-tasks', '--handler', '--exec', '--fail-interrupted', '--grace', '--kill-grace', '--rescan-interval', '--log-level']],
    [['enqueue'], ['--spool', '--wait', '--timeout', '--data']],
    [['wait'], ['--spool', '--timeout']],
    [['abort'], ['--spool']],
  ];
  for (const [command, options] of helps) {
    const r = await wq([...command, '--help']);
    const name = ['wq', ...command, '--help'].join(' ');
    t.equal(r.code, 0, `${name}: exit 0`);
    t.match(r.stdout, /Usage: wq/, `${name}: usage on stdout`);
    for (const option of options) t.match(r.stdout, option, `${name} mentions ${option}`);
  }
  const version = await wq(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
