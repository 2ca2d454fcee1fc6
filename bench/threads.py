"""Thread oversubscription benchmark: ``--tasks`` search tasks fitting at once, as the mapped
search does on one worker, with the library's per-task limit
(``forecastflow.orchestration.threads``) and without it (each BLAS/OpenMP pool one thread
per core, the default a scheduler-launched task gets when nothing pins threads). Each task
is a fresh process that backtests one trial of a shipped problem; the figure is the wall time
until the last task ends. The two modes alternate
``--rounds`` times (the machine is shared and noisy) and the medians are compared.

    .venv/bin/python bench/threads.py [--problem us_macro] [--family varmax] [--tasks 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TASK = """
import sys, time
from forecastflow.orchestration import threads
from forecastflow.data.problem import find_problem
from forecastflow.workflow import load_data
from forecastflow.evaluation.search import plan_trials, run_trial

problem = find_problem(sys.argv[1])
data = load_data(problem)
trial = plan_trials(problem, [sys.argv[2]], 1)[0]
start = time.process_time()
if sys.argv[3] == "limited":
    with threads.limited(int(sys.argv[4])):
        run_trial(trial, data, problem)
else:
    run_trial(trial, data, problem)
print(time.process_time() - start)
"""

PINNED = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FORECASTFLOW_THREADS")


def wave(problem: str, family: str, mode: str, tasks: int) -> tuple[float, float]:
    """Wall seconds until the last of ``tasks`` concurrent tasks ends; their mean CPU seconds."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", TASK, problem, family, mode, str(tasks)],
                              env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(tasks)]
    cpu = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{mode} task failed (exit {proc.returncode})")
        cpu.append(float(out.strip().splitlines()[-1]))
    return time.perf_counter() - start, statistics.mean(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="us_macro")
    parser.add_argument("--family", default="varmax")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"default": [], "limited": []}
    print(f"{args.tasks} concurrent {args.family} trials of {args.problem} on "
          f"{os.cpu_count()} cores")
    for round_ in range(args.rounds):
        for mode in ("default", "limited"):
            wall, cpu = wave(args.problem, args.family, mode, args.tasks)
            results[mode].append((wall, cpu))
            print(f"  round {round_ + 1} {mode:8s} wall {wall:7.1f} s  cpu/task {cpu:7.1f} s",
                  flush=True)
    default = statistics.median(w for w, _ in results["default"])
    limited = statistics.median(w for w, _ in results["limited"])
    print(f"median wall: default threads {default:.1f} s, limited {limited:.1f} s; "
          f"speed-up {default / limited:.2f}x")


if __name__ == "__main__":
    main()
