/**
 * What `wq enqueue` reads besides its arguments: `--env` and `--env-all` (the
 * task's variables), `--stdin` (the task's standard input) and `--data @FILE`
 * or `--data -` (the request itself). Every read is bounded by what a request
 * file can hold, and standard input is read only when a flag asks for it:
 * never from a terminal, never by surprise from a script's inherited stdin.
 */
import { createReadStream, fstatSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { MAX_REQUEST_BYTES } from '../queue/types.js';
import { badVariableName, type TaskInput } from '../task-input.js';
import { CliError, EXIT } from './common.js';

/** Longest JSON text `--data @FILE` or `--data -` reads: JSON is larger than its msgpack, and the encoded request must fit MAX_REQUEST_BYTES. */
export const MAX_DATA_TEXT_BYTES = 8 * MAX_REQUEST_BYTES;

/** A limit in words, for messages. */
export function describeBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB (${bytes} bytes)` : `${bytes} bytes`;
}

/** Commander's collector for a repeatable option. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * The task's variables from `--env NAME[=VALUE]` (NAME alone takes this
 * process's value) and `--env-all` (this whole environment, instead of the
 * server's; --env then overrides it).
 */
export function envFromFlags(specs: readonly string[] | undefined, all: boolean, here: NodeJS.ProcessEnv): Pick<TaskInput, 'env' | 'replaceEnv'> {
  if ((specs === undefined || specs.length === 0) && !all) return {};
  // No prototype: every valid name is kept, __proto__ too.
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  if (all) for (const [name, value] of Object.entries(here)) if (value !== undefined) env[name] = value;
  for (const spec of specs ?? []) {
    const eq = spec.indexOf('=');
    const name = eq === -1 ? spec : spec.slice(0, eq);
    const why = badVariableName(name);
    if (why !== undefined) throw new CliError(`--env "${spec}": expected NAME or NAME=VALUE, and the name ${why}`, EXIT.usage);
    const value = eq === -1 ? here[name] : spec.slice(eq + 1);
    if (value === undefined) throw new CliError(`--env ${name}: ${name} is not set here; give its value (--env ${name}=VALUE)`, EXIT.usage);
    if (value.includes('\0')) throw new CliError(`--env ${name}: the value holds a NUL byte, which no environment can carry`, EXIT.usage);
    env[name] = value;
  }
  return all ? { env, replaceEnv: true } : { env };
}

/** Standard input, whole, for `--stdin` or `--data -` (`flag`); refused on a terminal and past `maxBytes`. */
export async function readStandardInput(flag: string, maxBytes: number, stdin: Readable & { isTTY?: boolean } = process.stdin): Promise<Buffer> {
  if (stdin.isTTY === true) {
    throw new CliError(`${flag} reads standard input to its end, and it is a terminal: pipe or redirect the input (… | wq enqueue ${flag} …, or < FILE)`, EXIT.usage);
  }
  let bytes: Buffer | undefined;
  try {
    // Node's stdin ends quietly, as if empty, on a directory: read errors are told, never taken for no input.
    if (stdin === process.stdin && fstatSync(0).isDirectory()) readSync(0, Buffer.alloc(1));
    bytes = await readUpTo(stdin, maxBytes);
  } catch (err) {
    throw new CliError(`${flag}: cannot read standard input: ${(err as Error).message}`, EXIT.usage);
  }
  if (bytes === undefined) throw new CliError(`${flag}: standard input is over ${describeBytes(maxBytes)}, the most a request can carry; give the task a file to read instead`, EXIT.usage);
  return bytes;
}

/**
 * The request `--data` gives: JSON text, or `@FILE` (read from FILE, as curl
 * does), or `-` or `@-` (read from standard input).
 */
export async function dataFromFlag(value: string): Promise<unknown> {
  let text: string;
  let where: string;
  if (value === '-' || value === '@-') {
    text = (await readStandardInput(`--data ${value}`, MAX_DATA_TEXT_BYTES)).toString('utf8');
    where = 'standard input';
  } else if (value.startsWith('@')) {
    const path = value.slice(1);
    let bytes: Buffer | undefined;
    try {
      bytes = await readUpTo(createReadStream(path), MAX_DATA_TEXT_BYTES);
    } catch (err) {
      throw new CliError(`--data ${value}: cannot read ${path}: ${(err as Error).message}`, EXIT.usage);
    }
    if (bytes === undefined) throw new CliError(`--data ${value}: ${path} is over ${describeBytes(MAX_DATA_TEXT_BYTES)} of JSON; a request may be at most ${describeBytes(MAX_REQUEST_BYTES)} encoded`, EXIT.usage);
    text = bytes.toString('utf8');
    where = path;
  } else {
    return parseData(value, '--data');
  }
  return parseData(text, `--data ${value} (${where})`);
}

function parseData(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError(`${what} is not valid JSON: ${(err as Error).message}`, EXIT.usage);
  }
}

/** Everything `stream` gives, or undefined once it gives more than `maxBytes` (it is then destroyed). */
async function readUpTo(stream: Readable, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    length += buffer.length;
    if (length > maxBytes) {
      stream.destroy();
      return undefined;
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks, length);
}
