/**
 * Where a command's output goes while it runs: its log files in the spool
 * (created before it starts, so one that cannot be created fails the request
 * before anything runs) and the capped copy its result carries inline.
 */
import type { WriteStream } from 'node:fs';
import { createOutputLogs, OutputLogError, removeTaskLogs, writePidLog, type OutputStream } from '../spool/logs.js';
import { CommandError } from './command-types.js';

/**
 * A command's output files (spool/logs.ts). They are created before the
 * command is spawned: one that cannot be created (a non-empty directory
 * planted there, EMFILE) fails the request before anything runs. A write that
 * fails later (disk full) is reported once to `onError`, which stops the command.
 */
export class TaskLogs {
  readonly #dir: string;
  readonly #id: string;
  readonly #streams: Record<OutputStream, WriteStream>;

  constructor(dir: string, id: string, onError: (err: Error) => void) {
    this.#dir = dir;
    this.#id = id;
    try {
      this.#streams = createOutputLogs(dir, id);
    } catch (err) {
      if (!(err instanceof OutputLogError)) throw err;
      const why = err.code === 'EEXIST' ? 'something that is not a file is in the way' : err.message;
      throw new CommandError(`cannot create the output log logs/${id}.${err.stream}: ${why}; the command was not started`, 'ERR_LOG_FILE');
    }
    let failed = false;
    for (const s of Object.values(this.#streams)) {
      s.on('error', (err) => {
        if (!failed) onError(err);
        failed = true;
      });
    }
  }

  /** Records the command's pid, for `wq status` and followers; best effort: the result does not depend on it. */
  writePid(pid: number): void {
    writePidLog(this.#dir, this.#id, pid);
  }

  write(stream: OutputStream, chunk: Buffer): void {
    if (this.#streams[stream].writable) this.#streams[stream].write(chunk);
  }

  /** Resolves once both files are closed, written through or failed. */
  close(): Promise<void> {
    const end = (s: WriteStream) =>
      new Promise<void>((resolve) => {
        if (s.closed) return resolve();
        s.once('close', () => resolve());
        if (!s.destroyed) s.end();
      });
    return Promise.all([end(this.#streams.stdout), end(this.#streams.stderr)]).then(() => {});
  }

  /** Removes the files (after close): a stopped command's partial output is not kept. */
  remove(): void {
    removeTaskLogs(this.#dir, this.#id);
  }
}

/** Why spawn(2) failed, for the client. */
export function spawnFailure(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'command not found';
    case 'EMFILE':
    case 'ENFILE':
      return `the server has too many open files (${err.code}); the command was not started`;
    case 'EAGAIN':
      return 'the server may not start more processes now (EAGAIN); the command was not started';
    case 'ENOMEM':
      return 'out of memory (ENOMEM); the command was not started';
    default:
      return err.message;
  }
}

/** Keeps the first `limit` bytes of a stream and counts the rest. */
export class CappedBuffer {
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  dropped = 0;
  constructor(readonly limit: number) {}

  push(chunk: Buffer): void {
    const room = this.limit - this.#kept;
    if (room >= chunk.length) {
      this.#chunks.push(chunk);
      this.#kept += chunk.length;
    } else {
      if (room > 0) this.#chunks.push(chunk.subarray(0, room));
      this.#kept += Math.max(0, room);
      this.dropped += chunk.length - Math.max(0, room);
    }
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.#chunks);
  }
}
