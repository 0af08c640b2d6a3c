/**
 * The spool's QueueBackend.follow() (`wq wait --follow`): streams a command
 * task's output while it runs, like `tail -f`, from the logs the server writes
 * to `logs/<id>.stdout` and `.stderr`.
 * chokidar watches the two files (they may not exist yet), a slow re-read
 * covers what it misses, and each read starts at the last offset, so nothing
 * is read twice or skipped. A run after a server restart writes new logs (and
 * a new `logs/<id>.pid`): the follower notices, says so, and streams the new
 * run from its start.
 */
import { watch, type FSWatcher } from 'chokidar';
import { logPath, openSpool } from './layout.js';
import { ProtocolError } from '../errors.js';
import * as sfs from './fs.js';

const CHUNK_BYTES = 64 * 1024;
/** The safety re-read of the logs, in case the watcher missed a change. */
export const RECHECK_MS = 1000;
/** A pid record is a number and a newline; anything longer is not one. */
const MAX_PID_RECORD_BYTES = 64;

type Stream = 'stdout' | 'stderr';

export interface Follower {
  /** Whether any log file was found (if not, the result carries the output). */
  readonly sawLogs: boolean;
  /** Reads what is left, stops watching. */
  finish(): Promise<void>;
}

/**
 * The pid in a pid record, or undefined if it is not a whole one: the server
 * creates the file and then writes it, so a reader may find it empty.
 */
export function parsePidRecord(bytes: Uint8Array | undefined): string | undefined {
  const text = bytes === undefined ? '' : Buffer.from(bytes).toString('utf8');
  return /^\d+\n$/.test(text) ? text.trimEnd() : undefined;
}

/** Whether the pid record names a later run: it changed from one pid to another (a missing record says nothing). */
export function pidShowsLaterRun(knownPid: string | undefined, pid: string | undefined): boolean {
  return knownPid !== undefined && pid !== undefined && pid !== knownPid;
}

/** Whether a log file is not the one being read: another inode, or shorter than what was read of it. */
export function fileShowsLaterRun(knownIno: number | undefined, offset: number, file: { ino: number; size: number }): boolean {
  return knownIno !== undefined && (file.ino !== knownIno || file.size < offset);
}

/**
 * Follows the logs of request `id`. `onRerun(attempt)` is called when a later
 * run's logs replace the ones being read (attempt 2 is the second run this
 * follower saw); their output is then streamed from the start.
 */
export function followLogs(spool: string, id: string, sinks: Record<Stream, (chunk: Buffer) => void>, onRerun: (attempt: number) => void = () => {}): Follower {
  const paths = openSpool(spool, { create: false });
  const files = { stdout: logPath(paths, id, 'stdout'), stderr: logPath(paths, id, 'stderr') } as const;
  const pidFile = logPath(paths, id, 'pid');
  const offsets = { stdout: 0, stderr: 0 };
  /** The inodes of the log files being read: a different one is a later run's. */
  const inodes: Record<Stream, number | undefined> = { stdout: undefined, stderr: undefined };
  let knownPid: string | undefined;
  let attempt = 1;
  let sawLogs = false;
  const readPid = (): string | undefined => {
    try {
      return parsePidRecord(sfs.readEntry(pidFile, MAX_PID_RECORD_BYTES));
    } catch (err) {
      if (err instanceof ProtocolError) return undefined; // not a pid record: it tells nothing
      throw err;
    }
  };
  const laterRun = (pid: string | undefined): void => {
    offsets.stdout = offsets.stderr = 0;
    inodes.stdout = inodes.stderr = undefined;
    knownPid = pid;
    onRerun(++attempt);
  };
  const drain = (stream: Stream): void => {
    const found = sfs.readGrowingFile(
      files[stream],
      (stat) => {
        if (fileShowsLaterRun(inodes[stream], offsets[stream], stat)) laterRun(readPid());
        inodes[stream] = stat.ino;
        return offsets[stream];
      },
      (chunk) => {
        offsets[stream] += chunk.length;
        sinks[stream](chunk);
      },
      CHUNK_BYTES,
    );
    if (found) sawLogs = true;
  };
  const drainAll = (): void => {
    const pid = readPid();
    if (pidShowsLaterRun(knownPid, pid)) laterRun(pid);
    else knownPid ??= pid;
    drain('stdout');
    drain('stderr');
  };
  const watcher: FSWatcher = watch([files.stdout, files.stderr], { persistent: true, ignoreInitial: false });
  // chokidar arms its watch of a file that does not exist yet (its directory)
  // asynchronously, even after 'ready': a file created in the first few
  // milliseconds may raise no event (4 of 124 in a test). So, as the client's
  // waits do, read again at a slow pace as well; an error of the watcher
  // leaves that to do the work.
  watcher.on('add', drainAll).on('change', drainAll).on('ready', drainAll).on('error', () => {});
  const recheck = setInterval(drainAll, RECHECK_MS);
  recheck.unref();
  drainAll();
  return {
    get sawLogs() {
      return sawLogs;
    },
    async finish() {
      clearInterval(recheck);
      drainAll();
      await watcher.close();
    },
  };
}
