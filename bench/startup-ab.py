#!/usr/bin/env python3
"""Interleaved start-up timings (docs/benchmarks.md, "CLI start-up"): the wall
time and the child's user+sys CPU time (from wait4), medians per command.

usage: bench/startup-ab.py ROUNDS NAME=CMD [NAME=CMD ...]
CMD is split on spaces; leading VAR=value words set its environment. Each round
runs every command once, starting at a different one each round, so that a load
that comes and goes falls on all of them alike. Three rounds first warm the caches.
"""
import os, sys, time, statistics, json

def run(argv):
    env = dict(os.environ)
    while '=' in argv[0]:
        k, v = argv[0].split('=', 1); env[k] = v; argv = argv[1:]
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_RDWR)
        os.dup2(fd, 0); os.dup2(fd, 1); os.dup2(fd, 2)
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} exited {status}")
    return wall, (ru.ru_utime + ru.ru_stime) * 1000

pairs = int(sys.argv[1])
cmds = [(a.split('=', 1)[0], a.split('=', 1)[1].split(' ')) for a in sys.argv[2:]]
res = {n: ([], []) for n, _ in cmds}
for _ in range(3):
    for n, c in cmds: run(c)
for i in range(pairs):
    k = i % len(cmds)
    for n, c in cmds[k:] + cmds[:k]:
        w, cpu = run(c)
        res[n][0].append(w); res[n][1].append(cpu)
out = {n: {'wall_ms': round(statistics.median(w), 1), 'cpu_ms': round(statistics.median(c), 1)} for n, (w, c) in res.items()}
print(json.dumps(out))
