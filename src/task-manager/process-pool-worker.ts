/**
 * A process-pool child: loads the handler module once, then runs one request
 * at a time as the parent sends them. The parent kills the whole process group
 * to terminate a task; SIGTERM first aborts the handler's signal.
 */
import { pathToFileURL } from 'node:url';
import { serializeError } from '../errors.js';
import type { ParentMessage, ChildMessage } from './process-pool-messages.js';
import type { TaskContext } from './in-process.js';

const send = (message: ChildMessage): void => {
  process.send?.(message);
};

type Handler = (request: unknown, context: TaskContext) => unknown;

async function loadHandler(spec: string): Promise<Handler> {
  const url = /^[a-z][a-z0-9+.-]*:/i.test(spec) ? spec : pathToFileURL(spec).href;
  const mod = (await import(url)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new TypeError(`handler module ${spec} has no default export function (export default async function (request, { id, signal }) { … })`);
  }
  return mod.default as Handler;
}

let current: AbortController | undefined;
process.on('SIGTERM', () => {
  current?.abort(new Error('the request was aborted'));
  setImmediate(() => process.exit(143));
});
process.on('disconnect', () => process.exit(0));

async function main(): Promise<void> {
  try {
    const handler = await loadHandler(process.argv[2] ?? '');
    process.on('message', (message: ParentMessage) => {
      if (message.type !== 'run') return;
      const controller = new AbortController();
      current = controller;
      const { id } = message;
      Promise.resolve()
        .then(() => handler(message.request, { ...message.input, id, signal: controller.signal }))
        .then(
          (value) => send({ type: 'done', id, ok: true, value }),
          (err: unknown) => send({ type: 'done', id, ok: false, error: serializeError(err) }),
        )
        .catch((err: unknown) => send({ type: 'done', id, ok: false, error: serializeError(err) })) // value not serialisable
        .finally(() => {
          if (current === controller) current = undefined;
        });
    });
    send({ type: 'ready' });
  } catch (err) {
    send({ type: 'load-error', error: serializeError(err) });
    process.exitCode = 78; // EX_CONFIG
    process.disconnect?.();
  }
}

// Not a top-level await: `wq serve` runs this file from its CommonJS bundle too.
void main();
