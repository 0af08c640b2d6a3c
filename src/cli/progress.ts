/**
 * The one-line live status on a terminal while waiting: "queued #3 of 7" and
 * what holds the line ("capacity full (2 of 2 running)", "no server is
 * running"), then "running for 12s". Redrawn once a second from a cheap spool
 * snapshot (directory listings, the lock and server.state); erased cleanly
 * when the wait ends. Never drawn when stderr is not a TTY, and never over the
 * task's output: while a line the task wrote (--follow) is unfinished, the
 * status waits for its end, as the task's next bytes belong right after it.
 * Cut to the terminal's width, so that erasing it erases all of it.
 */
import { entryPath, openSpool, REQUEST_STATES } from '../spool/layout.js';
import { isRequestId } from '../spool/request-id.js';
import { queueHold, readServing } from '../status.js';
import * as sfs from '../spool/fs.js';
import { describeHold, describeInterrupted } from './hold-text.js';

const REDRAW_MS = 1000;
const CLEAR_LINE = '\r\x1b[2K';

export interface LiveLine {
  /**
   * Erases the line, runs `write`, which puts `shown` on the line's terminal
   * (output that must not mix with the line), and redraws the line, unless
   * `shown` leaves a line unfinished: then it is drawn again only once a
   * later write ends that line.
   */
  around(write: () => void, shown: Uint8Array | string): void;
  stop(): void;
}

const NEWLINE = 0x0a;

export function startLiveLine(spool: string, id: string, stream: NodeJS.WriteStream = process.stderr): LiveLine {
  const paths = openSpool(spool, { create: false });
  let shown = '';
  /** The terminal's cursor is after output that did not end its line. */
  let midLine = false;
  const draw = (): void => {
    if (midLine) return;
    const text = fitTo(describe(paths, id), stream.columns);
    if (text === shown) return;
    stream.write(`${CLEAR_LINE}${text}`);
    shown = text;
  };
  const erase = (): void => {
    if (shown !== '') stream.write(CLEAR_LINE);
    shown = '';
  };
  draw();
  const timer = setInterval(draw, REDRAW_MS);
  timer.unref();
  return {
    around(write, output) {
      erase();
      write();
      if (output.length > 0) midLine = (typeof output === 'string' ? output.charCodeAt(output.length - 1) : output[output.length - 1]) !== NEWLINE;
      draw();
    },
    stop() {
      clearInterval(timer);
      erase();
    },
  };
}

/** The text, cut to fit one row of a terminal `columns` wide (the last column left free: no wrap). */
export function fitTo(text: string, columns: number | undefined): string {
  if (columns === undefined || columns < 2 || text.length < columns) return text;
  return `${text.slice(0, columns - 2)}…`;
}

function describe(paths: ReturnType<typeof openSpool>, id: string): string {
  const state = REQUEST_STATES.find((s) => sfs.entryExists(entryPath(paths, s, id)));
  if (state === 'requested' || state === 'pending') {
    const waiting = [...sfs.listEntries(paths.dirs.requested), ...sfs.listEntries(paths.dirs.pending)].filter(isRequestId);
    const ahead = waiting.filter((other) => other < id).length;
    const hold = queueHold(paths, readServing(paths));
    return `wq: ${id} queued #${ahead + 1} of ${waiting.length}${hold === undefined ? '' : `: ${describeHold(hold)}`}`;
  }
  if (state === 'running') {
    // (What is left of its task is for `wq status`: looking every second would read all of /proc.)
    if (!readServing(paths).alive) return `wq: ${id} ${describeInterrupted({})}`;
    const since = sfs.entryStat(entryPath(paths, 'running', id))?.ctimeMs ?? Date.now();
    return `wq: ${id} running for ${formatSeconds((Date.now() - since) / 1000)}`;
  }
  return `wq: ${id} finishing`;
}

export function formatSeconds(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
