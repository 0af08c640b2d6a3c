/**
 * How a task process is started: checks, before anything is spawned, that a
 * command's program can be run (so "command not found" is told apart from a
 * command that failed); and, where util-linux `setpriv` is installed, the
 * prefix that starts a `--handler` worker through `setpriv --pdeathsig
 * SIGKILL` so that it dies with its server (one exec per worker, not per task;
 * commands have a watchdog instead: watchdog.ts). A worker's own children
 * survive that signal, which is why a starting server kills a dead one's
 * recorded process groups.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { isErrno } from '../errors.js';

/** Where util-linux installs setpriv. */
const SETPRIV_PATHS = ['/usr/bin/setpriv', '/bin/setpriv'];

let setpriv: string | null | undefined;

/** The argv prefix that makes a command die with this process: setpriv's, or none without it. */
export function parentDeathPrefix(): string[] {
  if (setpriv === undefined) setpriv = SETPRIV_PATHS.find(isExecutableFile) ?? null;
  return setpriv === null ? [] : [setpriv, '--pdeathsig', 'SIGKILL', '--'];
}

/**
 * Why `program` cannot be run, as the shell would see it (`ENOENT`: not found
 * in PATH or not there; `EACCES`: not executable), or undefined if it can.
 * A name without a slash is looked up in `pathVariable`; one with a slash is
 * taken relative to `cwd`.
 */
export function cannotRun(program: string, pathVariable: string | undefined, cwd: string): 'ENOENT' | 'EACCES' | undefined {
  if (program.includes('/')) return access(isAbsolute(program) ? program : resolve(cwd, program));
  let found: 'EACCES' | undefined;
  for (const dir of (pathVariable ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    const why = access(join(dir === '' ? cwd : resolve(cwd, dir), program));
    if (why === undefined) return undefined;
    if (why === 'EACCES') found = 'EACCES';
  }
  return found ?? 'ENOENT';
}

function access(path: string): 'ENOENT' | 'EACCES' | undefined {
  try {
    accessSync(path, constants.X_OK);
  } catch (err) {
    if (isErrno(err, 'EACCES') || isErrno(err, 'EPERM')) return 'EACCES';
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR') || isErrno(err, 'ELOOP') || isErrno(err, 'ENAMETOOLONG')) return 'ENOENT';
    throw err;
  }
  return isExecutableFile(path) ? undefined : 'EACCES'; // root may "execute" a directory by access(2); exec(2) says EACCES
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'EACCES') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EPERM')) return false;
    throw err;
  }
}
