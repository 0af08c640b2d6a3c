/** The pure rules of task-input.ts, over plain data. */
import t from 'tap';
import { badVariableName, commandEnvironment, hasTaskInput, invalidVariables, refusedInput } from '../src/task-input.js';

/** The environments commandEnvironment builds have no prototype, so that every name, __proto__ too, is an own key. */
const env = (vars: Record<string, string>): Record<string, string> => Object.assign(Object.create(null) as Record<string, string>, vars);

t.test('commandEnvironment: the server environment without OLDPWD, the request variables over it, PWD the command directory', async (t) => {
  const server = { PATH: '/usr/bin', HOME: '/home/wq', PWD: '/srv', OLDPWD: '/root', UNSET: undefined };
  t.strictSame(commandEnvironment(server, {}, '/work'), env({ PATH: '/usr/bin', HOME: '/home/wq', PWD: '/work' }), 'nothing asked: the server environment, PWD set, OLDPWD and unset names gone');
  t.strictSame(commandEnvironment(server, { env: { HOME: '/home/me', CC: 'clang' } }, '/work'), env({ PATH: '/usr/bin', HOME: '/home/me', PWD: '/work', CC: 'clang' }), 'variables override and add');
  t.strictSame(commandEnvironment(server, { env: { CC: 'clang', OLDPWD: '/prev' }, replaceEnv: true }, '/work'), env({ CC: 'clang', OLDPWD: '/prev', PWD: '/work' }), 'replaceEnv: none of the server variables; a client OLDPWD is its own');
  t.strictSame(commandEnvironment(server, { env: { PWD: '/lies' } }, '/work'), env({ PATH: '/usr/bin', HOME: '/home/wq', PWD: '/work' }), 'PWD always names the directory');
  t.strictSame(commandEnvironment({}, { replaceEnv: true }, '/'), env({ PWD: '/' }), 'an empty environment still gets PWD');
  const named = commandEnvironment({}, { env: JSON.parse('{"__proto__":"x"}') as Record<string, string> }, '/');
  t.equal(Object.getOwnPropertyDescriptor(named, '__proto__')?.value, 'x', '__proto__ is a variable like any other');
});

t.test('refusedInput: a list takes only its names and never a whole environment; all takes anything', async (t) => {
  t.equal(refusedInput({ env: { LD_PRELOAD: 'x' }, replaceEnv: true }, 'all'), undefined);
  t.equal(refusedInput({}, []), undefined, 'nothing asked, nothing refused');
  t.equal(refusedInput({ stdin: new Uint8Array([1]) }, []), undefined, 'stdin is never refused');
  t.equal(refusedInput({ env: { MAKEFLAGS: '-j8' } }, ['MAKEFLAGS', 'LANG']), undefined);
  t.match(refusedInput({ env: { PATH: '/tmp', MAKEFLAGS: '-j8', LD_PRELOAD: '/x.so' } }, ['MAKEFLAGS']), /takes only these environment variables from requests: MAKEFLAGS .*the request sets LD_PRELOAD, PATH, so the command was not run/);
  t.match(refusedInput({ env: { A: '1' } }, []), /takes no environment variables from requests .*the request sets A/);
  t.match(refusedInput({ env: { MAKEFLAGS: '-j8' }, replaceEnv: true }, ['MAKEFLAGS']), /does not take a whole environment \(--env-all\)/, 'a whole environment, even of accepted names');
});

t.test('variable names and sets', async (t) => {
  t.equal(badVariableName('CC'), undefined);
  t.equal(badVariableName('lower.case-ok'), undefined, 'names beyond the shell identifiers are legal in an environment');
  t.equal(badVariableName(''), 'is empty');
  t.equal(badVariableName('A=B'), 'contains "="');
  t.equal(badVariableName('A\0B'), 'contains a NUL byte');
  t.equal(invalidVariables({ A: '', B: 'x=y' }), undefined);
  t.match(invalidVariables({ A: null }), /gives A a null/);
  t.match(invalidVariables('A=1'), /not a map/);
  t.match(invalidVariables(new Uint8Array(1)), /not a map/);
  t.equal(hasTaskInput({}), false);
  t.equal(hasTaskInput({ replaceEnv: false }), false);
  t.equal(hasTaskInput({ env: {} }), true);
  t.equal(hasTaskInput({ stdin: new Uint8Array(0) }), true, 'even an empty stdin is input: the command gets a pipe, not /dev/null');
});
