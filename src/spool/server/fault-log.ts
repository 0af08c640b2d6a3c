/**
 * Logs spool faults (EACCES, EMFILE, ENOSPC …) once per episode, not at every
 * retry: the first failure of a step is an error line, repeats with the same
 * error code are counted (debug), and the first success after a failure logs
 * one `recovered` line with the count. A step failing with a new code logs again.
 */
import { serializeError } from '../../errors.js';
import type { LogFields, Logger } from '../../logger.js';

interface Episode {
  code: string;
  failures: number;
}

export class FaultLog {
  readonly #log: Logger;
  readonly #episodes = new Map<string, Episode>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Records a failure of `step`: logged as `<step> failed; will retry` the first time.
   * @example
   * faults.failed('rescan', err, { dir });
   */
  failed(step: string, err: unknown, fields: LogFields = {}): void {
    const { message, code = 'unknown' } = serializeError(err);
    const episode = this.#episodes.get(step);
    if (episode?.code === code) {
      episode.failures++;
      this.#log.debug(`${step} failed again`, { ...fields, code, error: message, failures: episode.failures });
      return;
    }
    this.#episodes.set(step, { code, failures: 1 });
    this.#log.error(`${step} failed; will retry`, { ...fields, code, error: message });
  }

  /** Records a success of `step`: ends its episode, if one is open, with a `recovered` line. */
  succeeded(step: string): void {
    const episode = this.#episodes.get(step);
    if (episode === undefined) return;
    this.#episodes.delete(step);
    this.#log.info(`${step} recovered`, { code: episode.code, failures: episode.failures });
  }
}
