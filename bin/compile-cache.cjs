/**
 * Loads the bundled CLI with its compiled code kept between calls, so that
 * `wq` does not compile its JavaScript afresh every time (docs/operations.md,
 * "The compile cache"). Whatever goes wrong here makes a call slower, never
 * makes it fail: the CLI is then loaded as usual.
 *
 * The CLI's entry file (what `enqueue`, `wait` and `abort` run) gets V8's code
 * cache made when a call exits, so it holds the functions that call compiled;
 * it is handed to V8 only if its own checksum and that of the source it was
 * made from match, since V8 trusts the bytes it is given and crashes on a
 * damaged cache, and compares only the source's length (an upgrade installed
 * by npm keeps the old modification time). V8 refuses a cache made by another
 * V8 version or with other flags.
 * Node's own module.enableCompileCache() (22.1 and later; not in Node 20)
 * caches only the code compiled up front, which saves half as much for the
 * entry (docs/benchmarks.md); it is turned on for the modules loaded later.
 *
 * The cache is per user, in $XDG_CACHE_HOME/wq (~/.cache/wq): a global
 * install is not writable by those who run it, and a directory shared by all
 * users (Node's default, in os.tmpdir()) would let one plant code for another.
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off, as it does Node's.
 */
'use strict';
const Module = require('node:module');
const { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { dirname, isAbsolute, join } = require('node:path');

const MAGIC = Buffer.from('wqv8c2\0\0');
const HEADER_BYTES = MAGIC.length + 12; // the source's size and crc32, then the crc32 of the V8 data after the header
const WRAPPER = ['(function (exports, require, module, __filename, __dirname) { ', '\n});'];

/**
 * `$XDG_CACHE_HOME/wq` or `~/.cache/wq`, made if missing (never its missing
 * ancestors); undefined if disabled or impossible, or if the directory is not
 * this user's alone (with sudo -E, say, HOME is another user's, who could
 * plant code there).
 */
function cacheDirectory(env) {
  if (env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  const home = env.HOME || require('node:os').homedir();
  const base = env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : join(home, '.cache');
  const directory = join(base, 'wq');
  for (const path of [base, directory]) {
    try {
      mkdirSync(path, { mode: 0o700 }); // one level at a time: recursive mkdir loops forever under /proc
    } catch (err) {
      if (err.code !== 'EEXIST') return undefined;
    }
  }
  return isOwnedByUs(statSync(directory)) ? directory : undefined;
}

/** Owned by this process's user, and writable by nobody else. */
function isOwnedByUs(stat) {
  return stat.uid === process.getuid() && (stat.mode & 0o022) === 0;
}

/** This user's cache file at `path`, or undefined if there is none, or it is another user's or no regular file (never followed, never blocked on). */
function readOwnCache(path) {
  let fd;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined; // none yet, or a symlink
  }
  try {
    const stat = fstatSync(fd);
    return stat.isFile() && stat.uid === process.getuid() ? readFileSync(fd) : undefined;
  } finally {
    closeSync(fd);
  }
}

/** The cache file of `entry` for this Node, named after both (several installs may share a user's cache). */
function cacheFile(directory, entry, crc32) {
  return join(directory, `v8-${process.version}-${process.arch}-${crc32(entry).toString(16)}.cache`);
}

/** The source's identity as a cache file's header records it: its size and crc32. */
function sourceKey(source, crc32) {
  return [source.length, crc32(source)];
}

/** V8's data from a cache file, or undefined unless it is whole and was made from the source whose key is `key`. */
function decode(file, [size, crc], crc32) {
  if (file.length <= HEADER_BYTES || !file.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const data = file.subarray(HEADER_BYTES);
  const fits = file.readUInt32LE(MAGIC.length) === size && file.readUInt32LE(MAGIC.length + 4) === crc;
  return fits && file.readUInt32LE(MAGIC.length + 8) === crc32(data) ? data : undefined;
}

function encode([size, crc], data, crc32) {
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header);
  header.writeUInt32LE(size, MAGIC.length);
  header.writeUInt32LE(crc, MAGIC.length + 4);
  header.writeUInt32LE(crc32(data), MAGIC.length + 8);
  return Buffer.concat([header, data]);
}

/**
 * Compiles `entry` (a CommonJS file) with its cache if it has a good
 * one, else without and saves one when the process exits (with the functions
 * the call compiled). Returns the compiled module wrapper and how the cache
 * fared, or undefined to let Node's loader compile the file.
 */
function compileWithV8Cache(entry, directory) {
  const { crc32 } = require('node:zlib');
  const { Script } = require('node:vm');
  const bytes = readFileSync(entry);
  const key = sourceKey(bytes, crc32);
  const path = cacheFile(directory, entry, crc32);
  const file = readOwnCache(path);
  const cachedData = file === undefined ? undefined : decode(file, key, crc32);
  const script = new Script(WRAPPER[0] + bytes.toString('utf8') + WRAPPER[1], { filename: entry, cachedData });
  const used = cachedData !== undefined && !script.cachedDataRejected;
  if (!used) {
    process.once('exit', () => {
      try {
        const temporary = `${path}.${process.pid}.tmp`;
        writeFileSync(temporary, encode(key, script.createCachedData(), crc32), { mode: 0o600 });
        renameSync(temporary, path); // whole or not at all
      } catch {
        // an unwritable cache only costs speed
      }
    });
  }
  return { wrapper: script.runInThisContext(), status: used ? 'used' : cachedData === undefined ? 'none' : 'rejected' };
}

/** Runs a compiled wrapper as the CommonJS module `entry`, registered where `require(entry)` finds it. */
function runAsModule(wrapper, entry) {
  const require = Module.createRequire(entry);
  const module = new Module(entry, null);
  module.filename = entry;
  module.paths = require.resolve.paths('any-package') ?? [];
  require.cache[entry] = module;
  try {
    wrapper.call(module.exports, module.exports, require, module, entry, dirname(entry));
  } catch (err) {
    delete require.cache[entry];
    throw err;
  }
  module.loaded = true;
  return module.exports;
}

/**
 * The exports of the CommonJS file `entry`, compiled with the user's cache
 * where there is one, and Node's compile cache on for the modules it loads
 * later, where Node has one. `status` says how the entry's cache fared:
 * 'used', 'rejected' (by V8), 'none' (missing, stale or damaged: a new one is
 * written at exit) or 'off'.
 */
function load(entry, env = process.env) {
  let compiled;
  try {
    const directory = cacheDirectory(env);
    if (directory !== undefined) {
      if (typeof Module.enableCompileCache === 'function') Module.enableCompileCache(directory);
      compiled = compileWithV8Cache(entry, directory);
    }
  } catch {
    compiled = undefined; // the cache is only a speed-up
  }
  if (compiled === undefined) return { exports: require(entry), status: 'off' };
  return { exports: runAsModule(compiled.wrapper, entry), status: compiled.status };
}

module.exports = { load, HEADER_BYTES };
