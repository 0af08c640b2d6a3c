/**
 * `--follow`: streams a command task's output while it runs, like `tail -f`,
 * from the logs the server writes to `logs/<id>.stdout` and `.stderr`.
 * chokidar watches the two files (they may not exist yet), a slow re-read
 * covers what it misses, and each read starts at the last offset, so nothing
 * is read twice or skipped.
 */
import { closeSync, fstatSync, openSync, readSync, constants } from 'node:fs';
import { watch, type FSWatcher } from 'chokidar';
import { logPath, openSpool } from '../spool/layout.js';
import { isErrno } from '../errors.js';

const CHUNK_BYTES = 64 * 1024;
/** The safety re-read of the logs, in case the watcher missed a change. */
export const RECHECK_MS = 1000;

export interface Follower {
  /** Whether any log file was found (if not, the result carries the output). */
  readonly sawLogs: boolean;
  /** Reads what is left, stops watching. */
  finish(): Promise<void>;
}

export function followLogs(spool: string, id: string, sinks: Record<'stdout' | 'stderr', (chunk: Buffer) => void>): Follower {
  const paths = openSpool(spool, { create: false });
  const files = { stdout: logPath(paths, id, 'stdout'), stderr: logPath(paths, id, 'stderr') } as const;
  const offsets = { stdout: 0, stderr: 0 };
  let sawLogs = false;
  const drain = (stream: 'stdout' | 'stderr'): void => {
    let fd: number;
    try {
      fd = openSync(files[stream], constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    try {
      if (!fstatSync(fd).isFile()) return;
      sawLogs = true;
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      for (;;) {
        const n = readSync(fd, buffer, 0, CHUNK_BYTES, offsets[stream]);
        if (n === 0) break;
        offsets[stream] += n;
        sinks[stream](Buffer.from(buffer.subarray(0, n)));
      }
    } finally {
      closeSync(fd);
    }
  };
  const drainAll = (): void => {
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
