/**
 * The order of a command's two output streams, kept beside them in its result
 * (`CommandResult.order`, docs/protocol.md): the lengths of the alternating
 * runs of stdout and stderr bytes as the server read them, stdout first (0 when
 * stderr came first). The streams stay apart for whoever wants them apart; a
 * client whose stdout and stderr lead to one file replays them in that order.
 *
 * It is the order in which the server read two pipes: writes far enough apart
 * in time keep theirs, but writes a few microseconds apart may be read as one
 * run each. Only a task whose stderr is joined to its stdout
 * (`CommandRequest.stderrToStdout`) has its order exactly.
 */

/** Runs recorded at most; bytes after the last one follow as the rest of stdout, then the rest of stderr. */
export const MAX_ORDER_RUNS = 4096;

type Stream = 'stdout' | 'stderr';

/** Records the runs of a command's output as its chunks are read. */
export class OutputOrder {
  readonly #runs: number[] = [];
  #full = false;

  /** Counts `bytes` read from `stream`, after everything pushed before. */
  push(stream: Stream, bytes: number): void {
    if (bytes === 0 || this.#full) return;
    const parity = stream === 'stdout' ? 0 : 1;
    if (this.#runs.length === 0 && parity === 1) this.#runs.push(0);
    const last = this.#runs.length - 1;
    if (last >= 0 && last % 2 === parity) this.#runs[last]! += bytes;
    else if (this.#runs.length < MAX_ORDER_RUNS) this.#runs.push(bytes);
    else this.#full = true; // from here on, the rest of each stream follows the last run
  }

  /** The runs, or undefined when there is no order to keep (one stream or none had output). */
  runs(): number[] | undefined {
    const has = (parity: number): boolean => this.#runs.some((n, i) => i % 2 === parity && n > 0);
    return has(0) && has(1) ? [...this.#runs] : undefined;
  }
}

/**
 * The two streams cut into the pieces written in the order `order` says, then
 * whatever it does not cover (stdout's rest, then stderr's). An order that is
 * not a list of byte counts (not ours) is ignored: the streams follow each other.
 * @example
 * inWrittenOrder(Buffer.from('1\n3\n'), Buffer.from('2\n'), [2, 2, 2]); // stdout '1\n', stderr '2\n', stdout '3\n'
 */
export function inWrittenOrder(stdout: Uint8Array, stderr: Uint8Array, order: unknown): Array<[Stream, Uint8Array]> {
  const pieces: Array<[Stream, Uint8Array]> = [];
  const at = { stdout: 0, stderr: 0 };
  const bytes = { stdout, stderr };
  const take = (stream: Stream, length: number): void => {
    const piece = bytes[stream].subarray(at[stream], at[stream] + length);
    at[stream] += piece.length;
    if (piece.length > 0) pieces.push([stream, piece]);
  };
  if (Array.isArray(order) && order.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    order.forEach((length: number, i) => take(i % 2 === 0 ? 'stdout' : 'stderr', length));
  }
  take('stdout', Infinity);
  take('stderr', Infinity);
  return pieces;
}
