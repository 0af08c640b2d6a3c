/**
 * Cuts a child's output stream into lines, for a log that takes one line at a
 * time. A line longer than `maxLineBytes` is passed on in pieces, so a
 * process that never writes a newline cannot make the reader buffer without
 * bound; what is left at the end is passed on by flush().
 */
import { StringDecoder } from 'node:string_decoder';

/** The longest piece of a line passed on at once (bytes of text, about). */
export const MAX_LOG_LINE_BYTES = 16 * 1024;

export class OutputLines {
  readonly #decoder = new StringDecoder('utf8');
  readonly #onLine: (line: string) => void;
  readonly #maxLineBytes: number;
  #partial = '';

  constructor(onLine: (line: string) => void, maxLineBytes = MAX_LOG_LINE_BYTES) {
    this.#onLine = onLine;
    this.#maxLineBytes = maxLineBytes;
  }

  push(chunk: Buffer): void {
    const lines = (this.#partial + this.#decoder.write(chunk)).split('\n');
    this.#partial = lines.pop()!;
    for (const line of lines) this.#onLine(line);
    while (this.#partial.length > this.#maxLineBytes) {
      this.#onLine(this.#partial.slice(0, this.#maxLineBytes));
      this.#partial = this.#partial.slice(this.#maxLineBytes);
    }
  }

  /** Passes on a last line without its newline, if any. */
  flush(): void {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    if (rest !== '') this.#onLine(rest);
  }
}
