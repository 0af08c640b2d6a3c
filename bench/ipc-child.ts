/**
 * The far end of the bench's "IPC round trip" row: answers each message with
 * one shaped like a pool worker's, as a ProcessPoolTaskManager child does.
 */
process.on('message', (message: { id: string; request: unknown }) => {
  process.send?.({ type: 'done', id: message.id, ok: true, value: message.request });
});
process.on('disconnect', () => process.exit(0));
