/**
 * V8 code caches for the bundled CLI, so that `wq` does not parse and compile
 * its JavaScript afresh at every call (docs/benchmarks.md, "CLI start-up").
 *
 * `npm run build` runs `wq` once on a scratch spool in recording mode
 * (scripts/code-cache.cjs) and writes, next to each bundle file `x.cjs` it
 * loaded, `x.v8cache`: the bytecode V8 compiled for it, including the
 * functions that run was using. `install()` then makes Node's CommonJS loader
 * compile those files with their cache. A cache is used only when the file's
 * size and modification time are those it was made from (V8 itself checks
 * only the source's length, so an edited file of the same size would run
 * stale code; hashing the source instead would cost about 2 ms per call). V8
 * refuses a cache made by another V8 version or with other flags; the file is
 * then compiled as usual. Files without a cache are left to Node. V8 notices a
 * short cache but not one damaged in place, which can crash it: caches are
 * written whole (rename), and `WQ_NO_CODE_CACHE=1` makes bin/wq skip them.
 * The published package carries none: npm resets files' modification times,
 * and another Node would refuse them anyway.
 */
'use strict';
const Module = require('node:module');
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { dirname } = require('node:path');
const { Script, constants } = require('node:vm');

const mainModule = require.main;
const MAGIC = Buffer.from('wqv8c1\0\0');
const HEADER_BYTES = MAGIC.length + 16; // then the source's size and mtime (ns), 64 bits each

/** The cache file of a bundle file. */
function cachePath(file) {
  return file.replace(/\.cjs$/, '.v8cache');
}

/** The cache file for V8's `data`, made from the source file whose stat is `stat` (bigint). */
function encodeCache(stat, data) {
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header);
  header.writeBigUInt64LE(stat.size, MAGIC.length);
  header.writeBigUInt64LE(stat.mtimeNs, MAGIC.length + 8);
  return Buffer.concat([header, data]);
}

/** V8's data from a cache file, or undefined if it was not made from this version of the source file. */
function decodeCache(stat, file) {
  if (file.length <= HEADER_BYTES || !file.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const size = file.readBigUInt64LE(MAGIC.length);
  const mtimeNs = file.readBigUInt64LE(MAGIC.length + 8);
  return size === stat.size && mtimeNs === stat.mtimeNs ? file.subarray(HEADER_BYTES) : undefined;
}

/**
 * import() in code, not in a comment. A script compiled from a cache cannot
 * import() (Node 20 loses the callback), so such files get no cache.
 */
const DYNAMIC_IMPORT = /^(?!\s*(\*|\/\/)).*\bimport\s*\(/m;

/**
 * Compiles a CommonJS file as Node's loader does (same wrapper), with or for
 * a cache. import() works when recording (through Node's loader, with an
 * ExperimentalWarning); files that use it are not cached.
 */
function compile(source, filename, cachedData) {
  return new Script(Module.wrap(source), { filename, cachedData, importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
}

/** Runs a compiled CommonJS file as `module`, as Node's loader does. */
function run(script, module, filename) {
  const wrapper = script.runInThisContext({ displayErrors: true });
  const require = (id) => module.require(id);
  require.resolve = (request, options) => Module._resolveFilename(request, module, false, options);
  require.resolve.paths = (request) => Module._resolveLookupPaths(request, module);
  require.main = mainModule;
  require.cache = Module._cache;
  require.extensions = Module._extensions;
  return wrapper.call(module.exports, module.exports, require, module, filename, dirname(filename));
}

/**
 * Compiles the `.cjs` files under `directory` (a path ending in a separator)
 * with their code cache. With `record`, compiles them without one and keeps
 * them, so that `write()` can save a cache for each after they have run
 * (except those that use import()); it returns the files it wrote for.
 * `stats` counts files compiled with their cache (`used`), files whose cache
 * V8 refused (`rejected`) and files whose cache was made from another version
 * of them (`stale`).
 */
function install(directory, { record = false } = {}) {
  const stats = { used: 0, rejected: 0, stale: 0 };
  const recorded = [];
  const nodeCompile = Module.prototype._compile;
  Module.prototype._compile = function compileWithCache(content, filename, ...rest) {
    if (!filename.startsWith(directory) || !filename.endsWith('.cjs') || content.startsWith('#!')) return nodeCompile.call(this, content, filename, ...rest);
    if (record) {
      const stat = statSync(filename, { bigint: true });
      const script = compile(content, filename);
      if (!DYNAMIC_IMPORT.test(content)) recorded.push({ filename, script, stat });
      return run(script, this, filename);
    }
    let cache;
    try {
      cache = readFileSync(cachePath(filename));
    } catch {
      return nodeCompile.call(this, content, filename, ...rest); // no cache for this file
    }
    const cachedData = decodeCache(statSync(filename, { bigint: true }), cache);
    if (cachedData === undefined) {
      stats.stale += 1;
      return nodeCompile.call(this, content, filename, ...rest);
    }
    const script = compile(content, filename, cachedData);
    if (script.cachedDataRejected) stats.rejected += 1;
    else stats.used += 1;
    return run(script, this, filename);
  };
  const write = () => {
    for (const { filename, script, stat } of recorded) {
      // Whole or not at all: V8 notices a short cache, not one damaged in place (that can crash it).
      const path = cachePath(filename);
      writeFileSync(`${path}.${process.pid}.tmp`, encodeCache(stat, script.createCachedData()));
      renameSync(`${path}.${process.pid}.tmp`, path);
    }
    return recorded.map(({ filename }) => filename);
  };
  return { stats, write };
}

module.exports = { install, cachePath, HEADER_BYTES };
