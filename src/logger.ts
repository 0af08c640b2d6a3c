/**
 * The logging seam. The library never prints: it calls a Logger, silent by
 * default; the CLI passes one that writes structured lines to stderr or a file.
 */
export type LogFields = Record<string, unknown>;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const noop = (): void => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * A logger writing one line per event, `time level message key=value …`, to a
 * sink. Values are JSON-quoted when they hold spaces or quotes.
 */
export function createLineLogger(write: (line: string) => void, minLevel: LogLevel = 'info', now: () => Date = () => new Date()): Logger {
  const threshold = LOG_LEVELS.indexOf(minLevel);
  const at = (level: LogLevel) =>
    LOG_LEVELS.indexOf(level) < threshold
      ? noop
      : (message: string, fields?: LogFields) => write(`${now().toISOString()} ${level} ${message}${formatFields(fields)}\n`);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function formatFields(fields: LogFields | undefined): string {
  if (fields === undefined) return '';
  let out = '';
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    out += ` ${key}=${/[\s"=]/.test(text) || text === '' ? JSON.stringify(text) : text}`;
  }
  return out;
}
