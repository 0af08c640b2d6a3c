/**
 * `wq`: commander wiring only. Each command's code is imported when it runs,
 * so `wq enqueue` never loads the server, the task managers or metrics.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from './commander.js';
import { CliError, EXIT, parseExecCommand, printError, QUEUE_HELP, SPOOL_HELP } from './common.js';
import { parseNumberIn, parseSecondsIn, parseWholeNumberIn } from './option-ranges.js';
import { MAX_TIMER_DELAY_MS } from '../long-timer.js';
import { exitQuietlyOnBrokenPipe } from './stop.js';

import { VERSION } from '../version.js';
import { MAX_OUTPUT_LIMIT_BYTES } from '../task-manager/output-budget.js';
import { parseSizeAtMost } from './size.js';
import { collect } from './input.js';

/** How --json gives a command's output: one documented shape per stream, whatever the bytes. */
const JSON_STREAMS_HELP = 'a command\'s "stdout" and "stderr" are strings when they are valid UTF-8, else {"base64": "…"}';

/** `--rescan-interval`: often enough to matter, never so often that rescans become a busy loop; at most what a timer holds. */
const RESCAN_INTERVAL_SECONDS = { min: 0.1, max: MAX_TIMER_DELAY_MS / 1000 };

export function buildProgram(): Command {
  const program = new Command('wq')
    .description(
      'A spool-directory FIFO work queue: clients drop requests into a spool, one server runs them ' +
        'in arrival order, never more than --max-tasks at once.',
    )
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(run wq --help, or wq COMMAND --help, for usage)')
    .addHelpText(
      'after',
      `
Examples:
  wq serve --max-tasks 2 &             # one server per spool
  wq enqueue --wait -- make -C ~/src   # run a command through the queue, print its output
  id=$(wq enqueue -- long-job.sh)      # queue it, get the id ...
  wq wait "$id"                        # ... and collect the result later
  wq status                            # what is queued, running, waiting to be claimed

Exit codes: 0 ok (or the command's own code), 1 task failed or output lost (wq abort: refused),
2 usage, 3 spool unusable or already served (or the --metrics-port address unusable), 4 unknown
request id, 124 timed out (request aborted), 128+N stopped by signal N while waiting (129 SIGHUP,
130 SIGINT, 143 SIGTERM: request aborted), 141 stdout or stderr closed by its reader (like
SIGPIPE; a request waited for is aborted; a result that could not be written stays in the spool
for a later wq wait, and stderr says so).`,
    );

  program
    .command('serve')
    .description('run the server for a spool (one per spool); stops on SIGTERM/SIGINT')
    .option('-s, --spool <dir>', SPOOL_HELP)
    .option('--queue <url>', QUEUE_HELP)
    .addOption(new Option('-j, --max-tasks <n>', 'most tasks running at once').argParser(parseWholeNumberIn({ min: 1 })).default(1))
    .addOption(new Option('--handler <module>', 'run requests in a pool of Node processes that load this ES module; its default export gets (request, { id, signal, env?, stdin? })').conflicts('exec'))
    .addOption(new Option('--exec <command>', "run COMMAND with each request's arguments appended (no shell; quotes group words)").argParser(parseExecCommand))
    .addOption(new Option('--accept-env <name>', 'with --exec: a variable that requests may set for the command (repeatable); by default they may set none').argParser(collect))
    .addOption(new Option('--max-load <load>', 'start new tasks only while the 1-minute load average is below this (e.g. the number of cores)').argParser(parseNumberIn({ what: 'a load average', min: 0, minExclusive: true })))
    .option('--allow-foreign-aborts', "in a spool shared by several users, let any of them abort another's queued or running request (by default only its owner, this server's user and root may)")
    .option('--allow-shared-commands', "DANGEROUS: let plain command mode serve a spool that other users can write, or a queue on Redis; every one of them (everyone who can write to that Redis) can then run any command as this user (on a spool, a root server still runs only root's requests; on Redis nothing tells who filed a request, so root runs anyone's)")
    .addOption(new Option('--max-output <size>', "most output a command may write, stdout and stderr together (e.g. 10M, 1G); past it the command is stopped and its request fails, so output is never cut silently; at most 1G, what a client can read back whole (default: 64M)").argParser(parseSizeAtMost(MAX_OUTPUT_LIMIT_BYTES, '1G')))
    .addOption(new Option('--global-max-tasks <n>', 'with --queue: most tasks running at once on all the servers of the queue together (BullMQ global concurrency; stays set on the queue)').argParser(parseWholeNumberIn({ min: 1 })))
    .addOption(new Option('--lock-duration <seconds>', 'with --queue: how long a running job stays this server\'s without a renewal; a server that cannot renew within 60 % of it kills the task, and another server runs it again after it (default: 30)').argParser(parseSecondsIn({ min: 1 })))
    .option('--durable', 'fsync results before they count as written, so they survive a power loss (group-committed; see docs/protocol.md)')
    .option('--fail-interrupted', 'complete requests that were running when the previous server stopped with a "server restarted" error, instead of running them again')
    .addOption(new Option('--grace <seconds>', 'on SIGTERM/SIGINT, let running tasks finish for this long before killing them').argParser(parseSecondsIn({ min: 0 })).default(10_000, '10'))
    .addOption(new Option('--kill-grace <seconds>', 'when killing a task, wait this long after SIGTERM before SIGKILL').argParser(parseSecondsIn({ min: 0 })).default(2000, '2'))
    .addOption(new Option('--rescan-interval <seconds>', 'safety rescan of the spool for events the watcher missed (at least 0.1)').argParser(parseSecondsIn(RESCAN_INTERVAL_SECONDS)).default(2000, '2'))
    .addOption(new Option('--result-ttl <seconds>', 'remove results nobody claimed (their client died) after this long (at least 1)').argParser(parseSecondsIn({ min: 1 })).default(7 * 24 * 3600_000, '604800, 7 days'))
    .addOption(new Option('--log-level <level>', 'least severe log lines to write: debug logs every transition, info a line per busy tick and a heartbeat').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .option('--log-file <path>', "append log lines to this file instead of stderr (reopened on SIGHUP, for logrotate); a --handler's own stdout and stderr go there too, a line each, tagged with the request id")
    .addOption(new Option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; see docs/metrics.md)').argParser(parseWholeNumberIn({ what: 'a port number', min: 0, max: 65535 })))
    .option('--metrics-host <host>', 'address to serve --metrics-port on (default: 127.0.0.1, this machine only)')
    .addHelpText(
      'after',
      `
With neither --handler nor --exec, each request's argv is run as a command in the
client's working directory (like nq or task-spooler), as the server's user. It
refuses a spool whose directory or state directories others can write, or another
user owns (unless --allow-shared-commands). A server that runs commands (plain or
--exec) as root runs only requests filed by root; others get a rejected result.
Every server refuses a spool that others could redirect: a directory on the way
to it, or the spool directory, owned by another user, or writable by others
without the sticky bit (see docs/operations.md).

A command's environment is the server's, with PWD set to its directory and no
OLDPWD, plus the variables its request carries (wq enqueue --env, --env-all);
with --exec, only names given with --accept-env, and a request that sets others
fails without running: a variable such as LD_PRELOAD, PATH or RSYNC_RSH could
make the fixed command run something else. Its stdin is what the request carries
(wq enqueue --stdin), else /dev/null. A --handler gets both as data, in its
context (env, stdin). When a command exits, whatever it left running in its
process group is killed (SIGKILL), so that --max-tasks counts all of the work.

Examples:
  wq serve --max-tasks 4
  wq serve --handler ./examples/copy-payload.js --max-tasks 2
  wq serve --exec "rsync -a" --spool /var/spool/wq
  wq serve --exec "make -C /srv/build" --accept-env MAKEFLAGS
  wq serve --metrics-port 9464         # Prometheus scrapes http://127.0.0.1:9464/metrics`,
    )
    .action(async (opts) => (await import('./serve.js')).serve(opts));

  program
    .command('enqueue')
    .description('add a request to the queue; print its id, or with --wait its output')
    .argument('[argv...]', 'the command to run (put it after --)')
    .option('-s, --spool <dir>', SPOOL_HELP)
    .option('--queue <url>', QUEUE_HELP)
    .option('-w, --wait', "wait for the result: print the command's output and exit with its exit code")
    .addOption(new Option('-t, --timeout <seconds>', 'with --wait: give up after this long in total (queued + running), abort the request and exit 124').argParser(parseSecondsIn({ min: 0 })))
    .addOption(new Option('-r, --run-timeout <seconds>', 'the server kills the task this long after it starts (queue time does not count); exit 124').argParser(parseSecondsIn({ min: 0 })))
    .option('-f, --follow', "with --wait: stream the command's output as it runs, like tail -f")
    .option('--data <json>', 'send this JSON value as the request, for a --handler server, instead of a command (a server that runs commands, plain or --exec, fails such a request and runs nothing); @FILE reads it from FILE, - from standard input')
    .addOption(new Option('--env <name[=value]>', "set a variable for the task (repeatable); a name alone passes this environment's value").argParser(collect))
    .option('--env-all', "send this whole environment: the task gets it instead of the server's (--env still adds to it)")
    .option('--stdin', "send standard input (up to 1 MiB, read to its end) to the task's stdin; without it, the task's stdin is /dev/null")
    .option('--durable', 'return only once the request is on disk (fsync), so it survives a power loss')
    .option('--json', `print one JSON object: the id, or with --wait the outcome (exit code, output or result, error); ${JSON_STREAMS_HELP}`)
    .option('-q, --quiet', "print nothing but the task's own output (no warnings, no live status); a note that output was lost still prints")
    .option('--detach-on-signal', 'with --wait: on SIGINT, SIGTERM, SIGHUP or a closed stdout, stop waiting but leave the request in the spool (its id goes to stderr) instead of aborting it; a closed stdout is noticed when wq writes to it, and a result it could not print stays in the spool')
    .passThroughOptions()
    .addHelpText(
      'after',
      `
The command runs in this directory, with the server's environment (PWD set to
this directory, no OLDPWD) plus each --env, or this whole environment with
--env-all, and /dev/null as its stdin unless --stdin. A --handler gets --env and
--stdin as data, in its context. When the command exits, whatever it left
running in the background (its process group) is killed with SIGKILL, so that
--max-tasks counts all of its work: wait for background jobs in the command
(sh -c 'job1 & job2 & wait'), and start services that must outlive it outside wq.

With --wait, SIGINT, SIGTERM and SIGHUP (Ctrl-C, timeout(1), a closed terminal) abort the
request, say so on stderr and exit 128+N; with --detach-on-signal the request stays queued.

With --wait (not --json), where wq's stdout and stderr are the same file or terminal (a shell's
\`>log 2>&1\`, an interactive terminal), the command's stderr is joined to its stdout, as 2>&1
does, so that what it writes keeps its order; elsewhere the two streams stay apart. \`wq wait\`
prints a result whose streams were kept apart in the order the server read them, where its own
stdout and stderr are one.

Examples:
  wq enqueue -- sleep 10                     # prints the request id
  wq enqueue --wait -- echo hi               # prints "hi"
  wq enqueue --wait --timeout 600 --run-timeout 60 -- ./flash.sh dut1
  wq enqueue --wait --follow -- make -j8      # output live, as it comes
  wq enqueue --wait --data '{"src":"a.bin","dest":"dut1:/tmp/"}'
  wq enqueue --wait --env CC=clang --env HOME -- make -j8
  git diff | wq enqueue --wait --stdin -- ./apply-and-test.sh
  wq enqueue --wait --data @request.json     # a request too long for the command line`,
    )
    .action(async (argv: string[], opts) => (await import('./request.js')).enqueue(argv, opts));

  program
    .command('wait')
    .description("wait for a request's result, print it and remove it from the spool (with --keep, leave it there)")
    .argument('<id...>', 'the request id printed by wq enqueue; several: their results print in the order given')
    .option('-s, --spool <dir>', SPOOL_HELP)
    .option('--queue <url>', QUEUE_HELP)
    .addOption(new Option('-t, --timeout <seconds>', 'give up after this long, abort the request (unless --keep) and exit 124').argParser(parseSecondsIn({ min: 0 })))
    .option('-f, --follow', "stream the command's output as it runs, like tail -f (one id only)")
    .option('--json', `print one JSON object for the outcome (exit code, output or result, error), one line per id; ${JSON_STREAMS_HELP}`)
    .option('-q, --quiet', "print nothing but the task's own output (no messages, no live status); a note that output was lost still prints")
    .option('--keep', 'print the result but leave it in the spool, for a later wq wait to claim; never abort the request: --timeout and signals only stop the waiting')
    .option('--detach-on-signal', 'on SIGINT, SIGTERM, SIGHUP or a closed stdout, stop waiting but leave the request in the spool (its id goes to stderr) instead of aborting it; a closed stdout is noticed when wq writes to it, and a result it could not print stays in the spool')
    .addHelpText('after', `
On a terminal, a live line on stderr shows the request's place in line and what holds it, then how
long it has run; it waits while the task's output (--follow) has left a line unfinished.
SIGINT, SIGTERM and SIGHUP abort the request (unless --detach-on-signal or --keep) and exit 128+N.

With several ids, wq waits for them all at once and prints each outcome in the order given, as
the shell's wait does (--json: one line each). It exits with the first non-zero exit code in that
order (0 if every command succeeded), or 128+N if a signal stopped it. A signal or --timeout acts
on every request not yet collected as it does on one.

Examples:
  wq wait "$id"                          # print the output, exit with the command's code
  wq wait --keep "$id"                   # look at the result; a later wq wait still gets it
  wq wait --keep --timeout 0 "$id"       # the result if it is there now, else exit 124
  wq wait "$a" "$b" "$c"                 # all three, in this order; fails if any failed`)
    .action(async (ids: string[], opts) => (await import('./request.js')).wait(ids, opts));

  program
    .command('abort')
    .description('abort requests: they never start, or are killed if running, or their results are dropped')
    .argument('[id...]', 'the request ids')
    .option('-s, --spool <dir>', SPOOL_HELP)
    .option('--queue <url>', QUEUE_HELP)
    .option('-a, --all', 'abort every request of yours that is queued or running (the ones whose files you own, never another user\'s); print their ids')
    .option('-q, --quiet', 'say nothing when an id is not in the spool or no server runs (a refusal is still said)')
    .addHelpText('after', `
Waits (up to 10 s) until the server has acted on each abort. Exit 0 once they are carried out,
or at once when no server runs (they take effect when one starts); 4 if an id is in no state
(its abort is kept 10 minutes in case the request is still being enqueued); 1 if the server
refused one (on a shared spool, only the request's owner, the server's user and root may abort
it) or did not act on it in time. With several ids, the first of these codes in the order given.
--all leaves results already written, to be claimed or aborted by id.`)
    .action(async (ids: string[], opts) => (await import('./request.js')).abort(ids, opts));

  program
    .command('status')
    .description('show the queue: the server, waiting requests with their place in line, running ones, unclaimed results')
    .argument('[id]', "show only this request's state")
    .option('-s, --spool <dir>', SPOOL_HELP)
    .option('--queue <url>', QUEUE_HELP)
    .option('--json', 'print a JSON object: { spool, server, counts, requests: [{ id, state, position?, heldBy?, runningSeconds?, pid?, interrupted?, survivingPids?, waitingSeconds?, aborting? }] }; seconds to the millisecond; counts.aborting counts the listed requests with an abort pending')
    .option('-a, --all', 'list every request (the text view shows the first 20 of each kind)')
    .action(async (id: string | undefined, opts) => (await import('./status.js')).status(id, opts));

  return program;
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnBrokenPipe();
  const program = buildProgram();
  // Subcommands copied their settings when created: set these on each, or their errors exit 1 unprefixed.
  for (const command of [program, ...program.commands]) {
    command.exitOverride();
    command.configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `wq: ${s}` : s) });
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    // Thrown by an action, not by commander's own parsing (which has printed its message already).
    if (err instanceof InvalidArgumentError) {
      printError(err.message);
      return EXIT.usage;
    }
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      // `wq` with no command: the help went to stderr, as a usage error's would.
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      printError(err.message);
      return err.exitCode;
    }
    const code = (err as { code?: unknown }).code;
    printError(err instanceof Error ? err.message : String(err));
    if (code === 'ERR_SPOOL_LOCKED' || code === 'ERR_SPOOL' || code === 'ERR_QUEUE_UNREACHABLE') return EXIT.spool;
    if (code === 'ERR_INVALID_OPTION') return EXIT.usage;
    if (code === 'ERR_UNKNOWN_REQUEST') return EXIT.unknownId;
    return EXIT.failure;
  }
}
