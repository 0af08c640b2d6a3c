// A provisioning handler for `wq serve --handler`: copies a payload file to a
// destination, the job the ancestor work queue throttled (payload copies to test
// devices). A destination of the form `host:path` (or `user@host:path`) goes
// through scp; anything else is a local path.
//
//   wq serve --handler examples/copy-payload.js --max-tasks 2
//   wq enqueue --wait --data '{"src": "/images/R120.bin", "dest": "dut1:/tmp/R120.bin"}'
//
// The request is `{ src, dest }`; the result is `{ src, dest, bytes, seconds }`.
// Aborting the request aborts `signal`: a local copy stops, and scp is killed
// (the server also kills this process's whole group).
import { spawn } from 'node:child_process';
import { copyFile, stat } from 'node:fs/promises';

/** Splits `host:path` the way scp does: a colon before any slash names a host. */
export function parseDestination(dest) {
  const colon = dest.indexOf(':');
  const slash = dest.indexOf('/');
  if (colon > 0 && (slash === -1 || colon < slash)) return { remote: true, host: dest.slice(0, colon), path: dest.slice(colon + 1) };
  return { remote: false, path: dest };
}

/** The scp command line for a remote copy: no prompts, so a queue never hangs on a password. */
export function scpArgv(src, dest) {
  return ['scp', '-q', '-B', '-o', 'ConnectTimeout=30', '--', src, dest];
}

export default async function copyPayload(request, { signal }) {
  const { src, dest } = request ?? {};
  if (typeof src !== 'string' || typeof dest !== 'string' || src === '' || dest === '') {
    throw Object.assign(new TypeError('expected a request { src: string, dest: string }'), { code: 'ERR_BAD_REQUEST' });
  }
  const { size } = await stat(src); // fails early, with ENOENT, for a missing payload
  const started = performance.now();
  if (parseDestination(dest).remote) await runScp(scpArgv(src, dest), signal);
  else {
    signal.throwIfAborted();
    await copyFile(src, dest);
  }
  return { src, dest, bytes: size, seconds: Number(((performance.now() - started) / 1000).toFixed(3)) };
}

function runScp(argv, signal) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', (err) => reject(err.code === 'ENOENT' ? Object.assign(new Error('scp is not installed on the server'), { code: 'ENOENT' }) : err));
    child.on('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(Object.assign(new Error(`scp failed (${sig ?? `exit ${code}`}): ${stderr.trim()}`), { code: 'ERR_SCP' }));
    });
  });
}
