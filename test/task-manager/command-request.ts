/** What a command server makes of a request body: plain data in, a command line or the mismatch out. */
import t from 'tap';
import { readCommandRequest } from '../../src/task-manager/command-request.js';

t.test('a command request: its argv, after the fixed command if there is one', async (t) => {
  t.same(readCommandRequest({ argv: ['echo', 'hi'], cwd: '/tmp', stderrToStdout: true }, []), { argv: ['echo', 'hi'], cwd: '/tmp', stderrToStdout: true });
  t.same(readCommandRequest({ argv: ['-v', 'a'] }, ['rsync', '-a']), { argv: ['rsync', '-a', '-v', 'a'], cwd: undefined, stderrToStdout: undefined });
  t.same(readCommandRequest({ argv: [] }, ['make']), { argv: ['make'], cwd: undefined, stderrToStdout: undefined }, 'no arguments: the fixed command alone');
});

t.test('data (a --data value) is not a command: the message names the mismatch for each kind of server', async (t) => {
  for (const body of [{ a: 1 }, {}, 'echo hi', 42, null, [1, 2], ['echo', 'hi']]) {
    const plain = readCommandRequest(body, []);
    t.match(plain, { code: 'ERR_BAD_REQUEST', problem: /^this server runs commands, and the request holds data \(wq enqueue --data\), not a command: give one after --/ }, JSON.stringify(body));
    const exec = readCommandRequest(body, ['rsync', '-a']);
    t.match(exec, { code: 'ERR_BAD_REQUEST', problem: /^this server runs "rsync -a" with each request's arguments appended, and the request holds data \(wq enqueue --data\), which are not arguments: give them after --/ }, JSON.stringify(body));
  }
});

t.test('a malformed command request keeps its own message', async (t) => {
  t.match(readCommandRequest({ argv: 'echo hi' }, []), { problem: 'the request has no valid argv: expected { argv: string[] }' });
  t.match(readCommandRequest({ argv: [] }, []), { problem: 'the request has an empty argv: nothing to run' });
  t.match(readCommandRequest({ argv: [''] }, []), { problem: 'the request has an empty argv: nothing to run' });
});
