/**
 * What a command server makes of a request's body (pure): `{ argv: string[],
 * cwd?: string, stderrToStdout?: boolean }`, its argv appended to the server's
 * fixed command (`wq serve --exec`). A body that is not a command, such as a `wq enqueue --data` value
 * meant for a `--handler` server, is refused with a message that names the
 * mismatch; neither kind of command server runs anything for it.
 */

/** The command line to run, or why there is none (and the error code for it). */
export type CommandLine = { argv: string[]; cwd: unknown; stderrToStdout: unknown } | { problem: string; code: string };

export function readCommandRequest(body: unknown, prefix: readonly string[]): CommandLine {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, 'argv')) {
    return { problem: notACommand(prefix), code: 'ERR_BAD_REQUEST' };
  }
  const { argv: tail, cwd, stderrToStdout } = body as { argv: unknown; cwd?: unknown; stderrToStdout?: unknown };
  if (!Array.isArray(tail) || !tail.every((a) => typeof a === 'string')) {
    return { problem: 'the request has no valid argv: expected { argv: string[] }', code: 'ERR_BAD_REQUEST' };
  }
  const argv = [...prefix, ...tail];
  if (argv.length === 0 || argv[0] === '') return { problem: 'the request has an empty argv: nothing to run', code: 'ERR_BAD_REQUEST' };
  return { argv, cwd, stderrToStdout };
}

function notACommand(prefix: readonly string[]): string {
  if (prefix.length === 0) {
    return 'this server runs commands, and the request holds data (wq enqueue --data), not a command: give one after -- (wq enqueue -- COMMAND ARGS…); data goes to a --handler server';
  }
  return (
    `this server runs ${JSON.stringify(prefix.join(' '))} with each request's arguments appended, and the request holds data (wq enqueue --data), ` +
    'which are not arguments: give them after -- (wq enqueue -- ARGS…); data goes to a --handler server'
  );
}
