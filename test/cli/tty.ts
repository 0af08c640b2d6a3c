/**
 * The live status line of `wq enqueue --wait`: on a terminal (a pseudo-terminal
 * made by util-linux `script`) it shows the place in line, then the run time,
 * and is erased before the command's output; on plain pipes it never appears.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spoolContents, startCliServer, waitFor, WQ } from '../fixtures/helpers.js';
import { closed, collect, openGate, sq, waitGate, wq } from '../fixtures/gates.js';

const CLEAR_LINE = '\r\x1b[2K';

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' });
const scriptMissing =
  hasScript.status === 0 && /util-linux/.test(hasScript.stdout + hasScript.stderr)
    ? undefined
    : 'util-linux `script` is not installed: cannot make a pseudo-terminal for wq';

/** Runs `wq ARGS` on a pseudo-terminal; everything it writes to the terminal comes out on the child's stdout. */
function wqOnTerminal(t: Test, args: string[]): ChildProcess {
  const commandLine = [process.execPath, WQ, ...args].map(sq).join(' ');
  const child = spawn('script', ['-q', '-e', '-c', commandLine, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/**
 * What a terminal shows after `text` (what script(1) recorded): the rows, with
 * carriage returns, erased lines (ESC [2K) and overwritten characters applied.
 */
function screen(text: string): string[] {
  const rows = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < text.length; i++) {
    const escape = /^\x1b\[[0-9;]*([A-Za-z])/.exec(text.slice(i, i + 16));
    if (escape !== null) {
      if (escape[0] === '\x1b[2K') rows[row] = '';
      i += escape[0].length - 1;
    } else if (text[i] === '\r') col = 0;
    else if (text[i] === '\n') rows[++row] ??= '';
    else {
      const line = rows[row]!.padEnd(col);
      rows[row] = line.slice(0, col) + text[i] + line.slice(col + 1);
      col++;
    }
  }
  return rows;
}

/** A served spool whose slots are all taken by requests that wait for `<dir>/blockers`. */
async function busyServer(t: Test, maxTasks: number): Promise<{ dir: string; spool: string; unblock: () => void }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'blockers');
  t.teardown(() => openGate(gate));
  await startCliServer(t, spool, ['--max-tasks', String(maxTasks)]);
  for (let i = 0; i < maxTasks; i++) {
    const r = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', waitGate(gate)]);
    if (r.code !== 0) throw new Error(`enqueue failed: ${r.stderr}`);
  }
  // running/ also holds each task's process record (<id>.proc): count the requests.
  await waitFor(() => spoolContents(spool).running.filter((name) => !name.endsWith('.proc')).length === maxTasks, 'the blockers to take every slot');
  return { dir, spool, unblock: () => openGate(gate) };
}

t.test('on a terminal: queued, then running, then erased before the output', { skip: scriptMissing }, async (t) => {
  const { dir, spool, unblock } = await busyServer(t, 1);
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  const child = wqOnTerminal(t, ['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', `${waitGate(gate)}; echo done-b`]);
  const terminal = collect(child.stdout);
  const scriptErr = collect(child.stderr);
  const ended = closed(child);

  await waitFor(() => terminal.text().includes('queued #'), 'the line to show the place in line');
  const id = /wq: (\d{16}-[0-9a-f]{12}) queued #/.exec(terminal.text())?.[1];
  t.ok(id, 'the line names the request');
  t.match(terminal.text(), `${CLEAR_LINE}wq: ${id} queued #1 of 1`, 'first in line, of one waiting');
  await waitFor(() => terminal.text().includes(`wq: ${id} queued #1 of 1: capacity full (1 of 1 running)`), 'the line to say what holds the request');
  t.notMatch(terminal.text(), 'running for', 'not running yet');

  unblock();
  await waitFor(() => terminal.text().includes('running for'), 'the line to show the run time');
  t.match(terminal.text(), new RegExp(`\\r\\x1b\\[2Kwq: ${id} running for \\d+s`), 'redrawn in place');
  t.notMatch(terminal.text(), 'done-b', 'the command has not finished');

  openGate(gate);
  const { code } = await ended;
  t.equal(code, 0, 'wq (through script -e) exits with the command’s code');
  t.equal(scriptErr.text(), '');
  const out = terminal.text();
  const lastStatus = Math.max(out.lastIndexOf('queued #'), out.lastIndexOf('running for'), out.lastIndexOf('finishing'));
  const lastClear = out.lastIndexOf(CLEAR_LINE);
  t.ok(lastClear > lastStatus, 'the last status text is followed by the erase sequence');
  const tail = out.slice(lastClear + CLEAR_LINE.length);
  t.equal(tail.replace(/\r\n/g, '\n'), 'done-b\n', "after the erase: only the command's output");
  t.equal(out.split('done-b').length, 2, 'the output is printed once');
});

t.test('on a terminal with no server: the line says so', { skip: scriptMissing }, async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const child = wqOnTerminal(t, ['enqueue', '--spool', spool, '--wait', '--', 'true']);
  const terminal = collect(child.stdout);
  await waitFor(() => /wq: \d{16}-[0-9a-f]{12} queued #1 of 1: no server is running/.test(terminal.text()), 'the line to say that no server runs');
  t.match(terminal.text(), `wq: no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts`, 'after the warning enqueue has always printed');
});

t.test('on a terminal, --follow: the live line never erases a line the task left unfinished', { skip: scriptMissing }, async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  await startCliServer(t, spool);
  const child = wqOnTerminal(t, ['enqueue', '--spool', spool, '--wait', '--follow', '--', 'sh', '-c', `printf partial; ${waitGate(gate)}; echo -rest`]);
  const terminal = collect(child.stdout);
  const ended = closed(child);
  await waitFor(() => terminal.text().includes('partial'), 'the unfinished line to be streamed');
  const id = /wq: (\d{16}-[0-9a-f]{12}) /.exec(terminal.text())?.[1];
  t.ok(id, 'the live line was drawn before it');
  // Let the line's once-a-second redraw come round: its run time has changed by then.
  const seconds = async (): Promise<number> => (JSON.parse((await wq(['status', '--spool', spool, '--json', id!])).stdout) as { runningSeconds: number }).runningSeconds;
  const shownAt = await seconds();
  await waitFor(async () => (await seconds()) >= shownAt + 2, 'two more seconds of run time');
  t.strictSame(screen(terminal.text()).filter((row) => row !== ''), ['partial'], 'the terminal still shows the unfinished line, and only it');

  openGate(gate);
  t.equal((await ended).code, 0);
  t.strictSame(screen(terminal.text()).filter((row) => row !== ''), ['partial-rest'], 'the task’s line, whole, and no status left behind');
});

t.test('on plain pipes there is no live line', { skip: scriptMissing }, async (t) => {
  // Two clients wait side by side: one on pipes, one on a terminal. The
  // terminal one proves the line would have been drawn, and redrawn while running.
  const { dir, spool, unblock } = await busyServer(t, 2);
  const gatePlain = join(dir, 'go-plain');
  const gateTty = join(dir, 'go-tty');
  t.teardown(() => {
    openGate(gatePlain);
    openGate(gateTty);
  });
  const plain = wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', `${waitGate(gatePlain)}; echo plain-done`]);
  await waitFor(() => spoolContents(spool).pending.length === 1, 'the plain client’s request to be queued');
  const tty = wqOnTerminal(t, ['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', `${waitGate(gateTty)}; echo tty-done`]);
  const terminal = collect(tty.stdout);
  const ttyEnded = closed(tty);
  await waitFor(() => terminal.text().includes('queued #2 of 2'), 'the terminal client to show its place in line');

  unblock();
  // "running for 1s": a second has passed since the requests started, so the plain client's redraw timer has fired too.
  await waitFor(() => /running for [1-9]/.test(terminal.text()), 'the terminal client to show a run time of a second or more');

  openGate(gatePlain);
  openGate(gateTty);
  const r = await plain;
  t.equal(r.code, 0);
  t.equal(r.stdout, 'plain-done\n');
  t.notMatch(r.stderr, 'queued #');
  t.notMatch(r.stderr, 'running for');
  t.notMatch(r.stderr, '\x1b[');
  t.equal(r.stderr, '', 'nothing at all on stderr');
  t.equal((await ttyEnded).code, 0);
});
