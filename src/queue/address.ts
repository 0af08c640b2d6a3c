/**
 * Where a queue lives, as users write it: `redis://[[USER]:PASSWORD@]HOST[:PORT]/NAME`
 * (or `rediss://` for TLS) names a queue on a Redis server, shared by every
 * host that can reach it; the spool is a directory, given by `--spool`.
 * Pure: parsing and checking only.
 */
import { InvalidOptionError } from '../errors.js';

export interface RedisQueueAddress {
  host: string;
  port: number;
  /** The Redis logical database (`?db=N`). @default 0 */
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** The queue's name: its keys are `wq:NAME:…`. */
  name: string;
}

/** Queue names: what a Redis key segment and a BullMQ queue name may hold without quoting (no `:`). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
export const DEFAULT_REDIS_PORT = 6379;

/** Whether `text` names a queue on Redis rather than a spool directory. */
export function isRedisAddress(text: string): boolean {
  return /^rediss?:\/\//i.test(text);
}

/**
 * Parses a `redis://` queue address; throws InvalidOptionError saying what is
 * wrong and what is expected.
 * @example
 * parseRedisAddress('redis://10.0.0.5:6379/flash') // { host: '10.0.0.5', port: 6379, db: 0, tls: false, name: 'flash' }
 */
export function parseRedisAddress(text: string): RedisQueueAddress {
  const expected = 'expected redis://HOST[:PORT]/NAME (or rediss:// for TLS), e.g. redis://127.0.0.1:6379/flash';
  const fail = (why: string): never => {
    throw new InvalidOptionError(`queue address ${JSON.stringify(redact(text))}: ${why}; ${expected}`);
  };
  if (!isRedisAddress(text)) fail('not a redis:// URL');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail('not a valid URL');
  }
  if (url.hostname === '') fail('no host');
  const port = url.port === '' ? DEFAULT_REDIS_PORT : Number(url.port);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (name === '') fail('no queue name after the host');
  if (!NAME_PATTERN.test(name)) fail(`the queue name ${JSON.stringify(name)} must be 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  let db = 0;
  for (const [key, value] of url.searchParams) {
    if (key !== 'db') fail(`unknown parameter "${key}" (only db=N is known)`);
    if (!/^\d{1,2}$/.test(value)) fail(`db must be a database number, got ${JSON.stringify(value)}`);
    db = Number(value);
  }
  if (url.hash !== '') fail('a "#" part means nothing here');
  const address: RedisQueueAddress = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port, db, tls: url.protocol.toLowerCase() === 'rediss:', name };
  if (url.username !== '') address.username = decodeURIComponent(url.username);
  if (url.password !== '') address.password = decodeURIComponent(url.password);
  return address;
}

/** The address as it may be shown (logs, status): without its password. */
export function redact(text: string): string {
  return text.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
}

/** The canonical text of an address, password hidden: for messages and `wq status`. */
export function formatRedisAddress(a: RedisQueueAddress): string {
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  const auth = a.username !== undefined || a.password !== undefined ? `${a.username ?? ''}${a.password !== undefined ? ':***' : ''}@` : '';
  return `${a.tls ? 'rediss' : 'redis'}://${auth}${host}:${a.port}/${a.name}${a.db !== 0 ? `?db=${a.db}` : ''}`;
}
