/** Messages between a ProcessPoolTaskManager and its children (IPC, structured-clone serialisation). */
import type { SerializedError } from '../errors.js';
import type { TaskInput } from '../task-input.js';

export type ParentMessage = { type: 'run'; id: string; request: unknown; input?: TaskInput };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'load-error'; error: SerializedError }
  | { type: 'done'; id: string; ok: true; value: unknown }
  | { type: 'done'; id: string; ok: false; error: SerializedError };
