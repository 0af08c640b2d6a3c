/**
 * A command's log files in logs/, as the task manager writes them: `<id>.stdout`
 * and `<id>.stderr` get its output as it comes, `<id>.pid` its process id. Each
 * is created in place of whatever is at its name, never written through
 * (openNewReplacing); they go with the result that names them (removeLogs in
 * layout.ts), or with a request that failed before it had one.
 */
import type { WriteStream } from 'node:fs';
import { LOG_SUFFIXES, logFilePath, type LogSuffix } from './layout.js';
import * as sfs from './fs.js';

export type OutputStream = Extract<LogSuffix, 'stdout' | 'stderr'>;

/** A log that could not be created: which one, and the error (EEXIST: a non-empty directory is in the way). */
export class OutputLogError extends Error {
  readonly code: string | undefined;
  constructor(
    readonly stream: OutputStream,
    cause: Error,
  ) {
    super(cause.message, { cause });
    this.name = new.target.name;
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}

/**
 * Creates a request's two output logs and returns a write stream on each.
 * If one cannot be created, nothing is left open and OutputLogError says which.
 */
export function createOutputLogs(logDir: string, id: string): Record<OutputStream, WriteStream> {
  const paths = { stdout: logFilePath(logDir, id, 'stdout'), stderr: logFilePath(logDir, id, 'stderr') };
  const fds: number[] = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    try {
      fds.push(sfs.openNewReplacing(paths[stream]));
    } catch (err) {
      for (const fd of fds) sfs.closeDescriptor(fd);
      throw new OutputLogError(stream, err as Error);
    }
  }
  return { stdout: sfs.descriptorWriteStream(fds[0]!, paths.stdout), stderr: sfs.descriptorWriteStream(fds[1]!, paths.stderr) };
}

/** Records a command's pid for `wq status` and followers. Best effort: the result does not depend on it. */
export function writePidLog(logDir: string, id: string, pid: number): void {
  try {
    sfs.writeNewReplacing(logFilePath(logDir, id, 'pid'), Buffer.from(`${pid}\n`));
  } catch {
    // only status and --follow read it, and both do without
  }
}

/** Removes a request's log files (after they are closed): a stopped or failed command's partial output is not kept. */
export function removeTaskLogs(logDir: string, id: string): void {
  for (const suffix of LOG_SUFFIXES) sfs.removeAnyEntry(logFilePath(logDir, id, suffix));
}
