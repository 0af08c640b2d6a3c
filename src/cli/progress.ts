/**
 * The one-line live status on a terminal while waiting: "queued #3 of 7" and
 * what holds the line ("capacity full (2 of 2 running)", "no server is
 * running"), then "running for 12s". Redrawn once a second from the queue's
 * cheap progress snapshot (queue.progress()); erased cleanly
 * when the wait ends. Never drawn when stderr is not a TTY, and never over the
 * task's output: while a line the task wrote (--follow) is unfinished, the
 * status waits for its end, as the task's next bytes belong right after it.
 * Cut to the terminal's width, so that erasing it erases all of it.
 */
import type { QueueBackend } from '../queue/backend.js';
import type { RequestProgress } from '../queue/types.js';
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

/** Starts the line: drawn first once the queue has told the request's progress, before the wait goes on. */
export async function startLiveLine(queue: QueueBackend, id: string, stream: NodeJS.WriteStream = process.stderr): Promise<LiveLine> {
  let shown = '';
  /** The terminal's cursor is after output that did not end its line. */
  let midLine = false;
  let stopped = false;
  const show = (progress: RequestProgress): void => {
    if (midLine || stopped) return;
    const text = fitTo(describe(progress, id), stream.columns);
    if (text === shown) return;
    stream.write(`${CLEAR_LINE}${text}`);
    shown = text;
  };
  const draw = (): void => {
    if (midLine) return;
    const progress = queue.progress(id);
    if (progress instanceof Promise) progress.then(show, () => {}); // a remote queue: the line waits for the next look
    else show(progress);
  };
  const erase = (): void => {
    if (shown !== '') stream.write(CLEAR_LINE);
    shown = '';
  };
  show(await queue.progress(id));
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
      stopped = true;
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

/** The line for a request's progress. */
export function describe(progress: RequestProgress, id: string, nowMs: number = Date.now()): string {
  switch (progress.state) {
    case 'requested':
    case 'pending':
      return `wq: ${id} queued #${progress.position} of ${progress.waiting}${progress.heldBy === undefined ? '' : `: ${describeHold(progress.heldBy)}`}`;
    case 'running':
      // (What is left of its task is for `wq status`: looking every second would read all of /proc.)
      if (progress.interrupted) return `wq: ${id} ${describeInterrupted({})}`;
      return `wq: ${id} running for ${formatSeconds((nowMs - (progress.sinceMs ?? nowMs)) / 1000)}`;
    default:
      return `wq: ${id} finishing`;
  }
}

export function formatSeconds(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
