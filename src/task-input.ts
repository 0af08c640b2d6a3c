/**
 * What a request carries for its task besides its body: environment variables
 * and the bytes of its standard input (docs/protocol.md, *Request envelope*).
 * Pure rules over plain data: which variables are valid, which a server takes,
 * and the environment a command runs with.
 */

/** Environment variables and standard input that a request carries for its task. */
export interface TaskInput {
  /**
   * Variables for the task. A command gets them on top of the server's own
   * environment (instead of it, with `replaceEnv`); a handler gets them as
   * data, in its context. Names are not empty and hold no `=` or NUL byte;
   * values hold no NUL byte.
   */
  env?: Record<string, string>;
  /**
   * `env` is the task's whole environment: none of the server's variables
   * reach a command (`wq enqueue --env-all`). @default false
   */
  replaceEnv?: boolean;
  /**
   * The task's standard input: a command reads it on its stdin, a handler
   * gets it as `context.stdin`. @default none: a command's stdin is /dev/null
   */
  stdin?: Uint8Array;
}

/** Which of a request's variables a server gives its commands: any, or only these names. */
export type AcceptedVariables = 'all' | readonly string[];

/** Why `name` cannot name an environment variable, or undefined if it can. */
export function badVariableName(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name.includes('=')) return 'contains "="';
  if (name.includes('\0')) return 'contains a NUL byte';
  return undefined;
}

/** What is wrong with `env` as a set of variables (the first problem), or undefined if nothing. */
export function invalidVariables(env: unknown): string | undefined {
  if (typeof env !== 'object' || env === null || Array.isArray(env) || env instanceof Uint8Array) return 'is not a map of names to strings';
  for (const [name, value] of Object.entries(env)) {
    const why = badVariableName(name);
    if (why !== undefined) return `has a variable whose name ${why}: ${JSON.stringify(name)}`;
    if (typeof value !== 'string') return `gives ${name} a ${value === null ? 'null' : typeof value}, not a string`;
    if (value.includes('\0')) return `gives ${name} a value with a NUL byte`;
  }
  return undefined;
}

/**
 * Why a server that takes only `accepted` variables refuses `input`, or
 * undefined if it takes it. With a list, every name the request sets must be
 * on it, and a whole environment (`replaceEnv`) is refused: the server's own
 * environment (its PATH, HOME) is part of what it vouches for.
 */
export function refusedInput(input: TaskInput, accepted: AcceptedVariables): string | undefined {
  if (accepted === 'all') return undefined;
  const allowed = new Set(accepted);
  const refused = Object.keys(input.env ?? {}).filter((name) => !allowed.has(name)).sort();
  const takes = accepted.length === 0 ? 'takes no environment variables from requests' : `takes only these environment variables from requests: ${[...accepted].sort().join(', ')}`;
  if (input.replaceEnv === true) return `this server runs a fixed command in its own environment and ${takes}; it does not take a whole environment (--env-all), so the command was not run`;
  if (refused.length > 0) return `this server runs a fixed command and ${takes} (wq serve --accept-env); the request sets ${refused.join(', ')}, so the command was not run`;
  return undefined;
}

/**
 * A command's environment: the server's own (or nothing, with `replaceEnv`)
 * without its OLDPWD, which names the server's shell's previous directory;
 * then the request's variables; then PWD, set to the directory the command
 * runs in, whatever came before (a program may trust PWD over getcwd()).
 */
export function commandEnvironment(serverEnv: Readonly<Record<string, string | undefined>>, input: TaskInput, cwd: string): Record<string, string> {
  const env = Object.create(null) as Record<string, string>; // every valid name is a key, __proto__ too
  if (input.replaceEnv !== true) {
    for (const [name, value] of Object.entries(serverEnv)) if (value !== undefined && name !== 'OLDPWD') env[name] = value;
  }
  for (const [name, value] of Object.entries(input.env ?? {})) env[name] = value;
  env.PWD = cwd;
  return env;
}

/** Whether `input` (a TaskInput, or an envelope being checked) carries anything. */
export function hasTaskInput(input: { env?: unknown; replaceEnv?: unknown; stdin?: unknown }): boolean {
  return input.env !== undefined || input.replaceEnv === true || input.stdin !== undefined;
}

/** What a request carries for its task besides its body (a request envelope's env, replaceEnv, stdin); undefined when it carries nothing. */
export function taskInputOf(envelope: TaskInput): TaskInput | undefined {
  if (!hasTaskInput(envelope)) return undefined;
  const input: TaskInput = {};
  if (envelope.env !== undefined) input.env = envelope.env;
  if (envelope.replaceEnv !== undefined) input.replaceEnv = envelope.replaceEnv;
  if (envelope.stdin !== undefined) input.stdin = envelope.stdin;
  return input;
}
