"""Load test of `forecastflow serve`: the highest request rate it sustains with p99 <= 20 ms
and no errors, memory over a 60 s hold, and the same hold with a champion swap mid-run.

Two real champions are registered in a temporary MLflow store (or reused with ``--home``):
``us_macro`` (VARMAX with exog ``tbilrate``, statsmodels macrodata) and ``tourism_monthly``
(366 monthly series, seasonal naive, exog-free: answered from its serving card), each with a
second version to swap to. The server runs as a subprocess on a free loopback port with
``--poll-seconds 1``; the load comes from a separate process (asyncio + aiohttp, keep-alive
connections) with distinct requests: random horizons, series subsets and exog values, so the
response cache is not what is measured.

- Two workloads: exog-free requests only (answered from the serving card), and a mix with a
  share ``--exog-share`` of us_macro requests (answered by the model, in the model workers).
  For each, a step search: 10 s open-loop steps (a fixed arrival schedule; latency counts
  from the scheduled time, so queueing is included) at rising rates; the highest passing rate
  (p99 <= 20 ms, 0 errors; the lowest step when none passes) is held for ``--hold`` seconds,
  stepping down by 0.75x after a failed hold (three holds at most), while the RSS of the
  server and its model workers is sampled each second; then held again at that rate with
  both champions moved to their other version halfway through.
- Before/after: exog requests only, closed loop at 4 connections, with the model workers
  against one compute thread (``--model-workers 0``, or the code in ``--baseline-tree``), the
  baseline run before and after (the machine is shared).

    .venv/bin/python bench/load.py [--hold 60] [--exog-share 0.1] [--home DIR]
        [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from serving import free_port, stop

BIN = Path(sys.executable).parent
MACRO, PANEL = "us_macro", "tourism_monthly"
TARGET_P99_MS = 20.0
STEP_SECONDS = 10.0
HOLD_ATTEMPTS = 3  # holds at 0.75x the rate after a failed one
MAX_REQUESTS = 200_000  # per run: the bound whatever the rate
STEP_RATES = [25, 50, 100, 150, 200, 300, 400, 500, 650, 800, 1000, 1300]


# Champions ---------------------------------------------------------------------------------

def _register(problem: Any, trial: Any, key: str) -> str:
    from forecastflow import storage
    from forecastflow.lifecycle import registry, tracking
    from forecastflow.lifecycle.contract import model_meta
    from forecastflow.workflow import load_data

    data = load_data(problem)
    model = trial.build(problem, data.season).fit(data.y, data.X)
    path = storage.write_model(model, storage.state_dir() / "load_models" / problem.name / key
                               / "model.pkl")
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    run = tracking.find_or_create_run(problem.name, {"airflow_run_id": key}, run_name=key)
    return registry.register(problem.name, run, path, meta, {"family": trial.family})


def champions(home: Path) -> dict[str, list[str]]:
    """Two registered versions per problem (trained once per ``home``); the first is made
    champion."""
    import warnings

    warnings.simplefilter("ignore")
    from forecastflow.data.problem import find_problem
    from forecastflow.evaluation.search import Trial
    from forecastflow.lifecycle import registry

    saved = home / "load_versions.json"
    if saved.exists():
        versions = json.loads(saved.read_text())
    else:
        macro, panel = find_problem(MACRO), find_problem(PANEL)
        versions = {
            MACRO: [_register(macro, Trial("varmax", {"order": [o, 0], "trend": "c"},
                                           "log-diff"), f"varmax{o}") for o in (1, 2)],
            PANEL: [_register(panel, Trial(f, {}, "none"), f)
                    for f in ("seasonal_naive", "naive")]}
        saved.write_text(json.dumps(versions))
    for name, (first, _) in versions.items():
        registry.promote(name, first, ["load benchmark"])
    return versions


def swap(versions: dict[str, list[str]]) -> dict[str, str]:
    """Move each champion alias to the version not serving; returns the new versions."""
    from forecastflow.lifecycle import registry

    moved = {}
    for name, pair in versions.items():
        current = str(registry.alias_version(name, registry.CHAMPION).version)
        moved[name] = pair[1] if current == pair[0] else pair[0]
        registry.promote(name, moved[name], ["load benchmark: swap"])
    return moved


# Server ------------------------------------------------------------------------------------

def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def start(home: Path, workers: int | None, tree: Path | None = None,
          ) -> tuple[subprocess.Popen, str]:
    """`forecastflow serve` on both problems; returns it once exog requests are answered."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW", "AIRFLOW"))}
    env.update({"FORECASTFLOW_HOME": str(home), "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1"})
    args = [] if workers is None else ["--model-workers", str(workers)]
    if tree is not None:  # the code before the change (its own include/ first on the path)
        env["PYTHONPATH"] = str(tree / "include")
    cmd = [str(BIN / "forecastflow"), "serve", MACRO, PANEL, "--port", str(port),
           "--poll-seconds", "1", *args]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                               stderr=(home / "serve.log").open("a"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited with {process.returncode}")
        try:
            if get(base + "/health")["status"] == "ok":
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        stop(process)
        raise RuntimeError(f"{base}/health never reported ok")
    drive({"mode": "closed", "base": base, "seconds": 3.0, "connections": 4, "seed": 0})
    return process, base


class RssSampler(threading.Thread):
    """The RSS of a process and its children (model workers), once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.halt.wait(1.0):
            try:
                procs = [root, *root.children(recursive=True)]
                self.samples.append(sum(p.memory_info().rss for p in procs) / 2**20)
            except psutil.Error as err:  # a worker ending between the listing and the read
                print(f"rss sample skipped: {err}", file=sys.stderr)

    def summary(self) -> dict[str, float]:
        self.halt.set()
        self.join()
        s = self.samples or [float("nan")]
        return {"rss_start": s[0], "rss_end": s[-1], "rss_max": max(s)}


# Load generator (runs in its own process) ---------------------------------------------------

def bodies(base: str, n: int, seed: int, exog_share: float) -> list[tuple[str, bytes]]:
    """``n`` distinct requests: exog-free panel ones (random horizon, 1-8 random series) and,
    a share ``exog_share``, us_macro ones (random horizon and tbilrate values)."""
    rng = random.Random(seed)
    limits = {p["name"]: int(p["max_horizon"]) for p in get(base + "/problems")}
    series = get(f"{base}/problems/{PANEL}/series")["series_ids"]
    out = []
    for _ in range(n):
        if rng.random() < exog_share:
            h = rng.randint(1, limits[MACRO])
            body = {"horizon": h, "exog": [{"tbilrate": round(rng.uniform(0.0, 15.0), 6)}
                                           for _ in range(h)]}
            out.append((f"{base}/problems/{MACRO}/forecast", json.dumps(body).encode()))
        else:
            body = {"horizon": rng.randint(1, limits[PANEL]),
                    "series_ids": rng.sample(series, rng.randint(1, 8))}
            out.append((f"{base}/problems/{PANEL}/forecast", json.dumps(body).encode()))
    return out


def _stats(latencies: list[float], errors: Counter, versions: Counter, elapsed: float,
           lags: list[float], distinct: int) -> dict[str, Any]:
    latencies.sort()
    lags.sort()

    def q(values: list[float], p: float) -> float:
        return 1000 * values[min(len(values) - 1, int(p * len(values)))] if values else 0.0

    return {"n": len(latencies), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "rps": len(latencies) / elapsed, "p50_ms": q(latencies, 0.5),
            "p99_ms": q(latencies, 0.99), "max_ms": q(latencies, 1.0),
            "send_lag_p99_ms": q(lags, 0.99), "distinct": distinct,
            "versions": {f"{p} v{v}": c for (p, v), c in sorted(versions.items())}}


async def _send(session: Any, url: str, body: bytes, errors: Counter,
                versions: Counter) -> None:
    try:
        async with session.post(url, data=body,
                                headers={"Content-Type": "application/json"}) as response:
            payload = await response.read()
            if response.status != 200:
                errors[f"HTTP {response.status}"] += 1
                return
        answer = json.loads(payload)
        versions[(answer["problem"], answer["model_version"])] += 1
    except (TimeoutError, OSError, ValueError) as err:
        errors[type(err).__name__] += 1


async def open_loop(base: str, rate: float, seconds: float, seed: int,
                    exog_share: float) -> dict[str, Any]:
    """Requests sent at ``rate`` on a fixed schedule; latency from the scheduled time."""
    import aiohttp

    n = min(MAX_REQUESTS, int(rate * seconds))
    work = bodies(base, n, seed, exog_share)
    latencies, lags, errors, versions = [], [], Counter(), Counter()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(due: float, url: str, body: bytes) -> None:
            lags.append(time.perf_counter() - due)
            await _send(session, url, body, errors, versions)
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter()
        tasks = []
        for i, (url, body) in enumerate(work):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, url, body)))
        await asyncio.gather(*tasks)
        elapsed = max(time.perf_counter() - start, seconds)
    return _stats(latencies, errors, versions, elapsed, lags, len({b for _, b in work}))


async def closed_loop(base: str, connections: int, seconds: float, seed: int,
                      ) -> dict[str, Any]:
    """Exog requests only, ``connections`` clients back to back (as bench/serving.py)."""
    import aiohttp

    work = bodies(base, MAX_REQUESTS // 10, seed, 1.0)
    latencies, errors, versions = [], Counter(), Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter()

        async def client(k: int) -> None:
            for url, body in work[k::connections]:
                if time.perf_counter() - start > seconds:
                    return
                sent = time.perf_counter()
                await _send(session, url, body, errors, versions)
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(client(k) for k in range(connections)))
        elapsed = time.perf_counter() - start
    return _stats(latencies, errors, versions, elapsed, [], len(latencies))


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in a separate process (its own interpreter and core)."""
    out = subprocess.run([sys.executable, __file__, "--drive", json.dumps(spec)],
                         capture_output=True, text=True, check=False,
                         timeout=spec["seconds"] + 300)
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _generator(spec: dict[str, Any]) -> None:
    if spec["mode"] == "open":
        result = asyncio.run(open_loop(spec["base"], spec["rate"], spec["seconds"],
                                       spec["seed"], spec["exog_share"]))
    else:
        result = asyncio.run(closed_loop(spec["base"], spec["connections"], spec["seconds"],
                                         spec["seed"]))
    print(json.dumps(result))


# Runs --------------------------------------------------------------------------------------

def passes(result: dict[str, Any]) -> bool:
    return result["errors"] == 0 and result["p99_ms"] <= TARGET_P99_MS


def step_search(base: str, exog_share: float, log: list, tag: str) -> float:
    """The highest rate of ``STEP_RATES`` passing a 10 s step (stops at the first failure),
    then one step halfway to the failing rate; 0 when none passes."""
    best, failed = 0.0, None
    for i, rate in enumerate(STEP_RATES):
        result = drive({"mode": "open", "base": base, "rate": rate, "seconds": STEP_SECONDS,
                        "seed": 100 + i, "exog_share": exog_share})
        log.append((f"{tag} step", rate, result))
        if not passes(result):
            failed = rate
            break
        best = rate
    if best and failed:
        middle = (best + failed) / 2
        result = drive({"mode": "open", "base": base, "rate": middle, "seconds": STEP_SECONDS,
                        "seed": 99, "exog_share": exog_share})
        log.append((f"{tag} step", middle, result))
        best = middle if passes(result) else best
    return best


def hold(process: subprocess.Popen, base: str, rate: float, seconds: float,
         exog_share: float, seed: int, swap_to: dict[str, list[str]] | None = None,
         ) -> dict[str, Any]:
    """``seconds`` at ``rate`` with the RSS sampled; with ``swap_to``, the champions move
    halfway through."""
    sampler = RssSampler(process.pid)
    sampler.start()
    timer = None
    moved: dict[str, str] = {}
    if swap_to is not None:
        timer = threading.Timer(seconds / 2, lambda: moved.update(swap(swap_to)))
        timer.start()
    result = drive({"mode": "open", "base": base, "rate": rate, "seconds": seconds,
                    "seed": seed, "exog_share": exog_share})
    if timer is not None:
        timer.join()
        result["swapped_to"] = moved
    return {**result, **sampler.summary()}


def workload(process: subprocess.Popen, base: str, share: float, args: argparse.Namespace,
             log: list) -> float:
    """Step search, then holds from the highest passing step rate down until one passes
    (at most ``HOLD_ATTEMPTS``; at the lowest step rate when no step passes: memory and swap
    are still measured), then a hold with a swap at that rate. Returns the rate a hold
    passed at (0: none)."""
    tag = "exog-free" if share == 0 else f"{share:.0%} exog"
    held = step_search(base, share, log, tag) or STEP_RATES[0]
    for attempt in range(HOLD_ATTEMPTS):  # a 10 s step is not a 60 s hold: step down
        result = hold(process, base, held, args.hold, share, 7 + attempt)
        log.append((f"{tag} hold", held, result))
        if passes(result) or held <= STEP_RATES[0] or attempt == HOLD_ATTEMPTS - 1:
            break
        held = max(STEP_RATES[0], 0.75 * held)
    log.append((f"{tag} hold + swap", held, hold(process, base, held, args.hold, share, 20,
                                                 swap_to=args.versions)))
    return held if passes(result) else 0.0


def exog_p99(base: str, seconds: float, seed: int) -> dict[str, Any]:
    return drive({"mode": "closed", "base": base, "seconds": seconds, "connections": 4,
                  "seed": seed})


def baseline(home: Path, tree: Path | None, seconds: float, seed: int) -> dict[str, Any]:
    """Exog p99 at 4 connections on one compute thread (before the model workers)."""
    process, base = start(home, None if tree else 0, tree)
    try:
        return exog_p99(base, seconds, seed)
    finally:
        stop(process)


def row(label: str, rate: float | str, r: dict[str, Any]) -> str:
    rss = (f"{r['rss_start']:6.0f} {r['rss_end']:6.0f} {r['rss_max']:6.0f}"
           if "rss_start" in r else "")
    rate_s = f"{rate:7.0f}" if isinstance(rate, (int, float)) else f"{rate:>7s}"
    verdict = "" if rate == "closed" else ("pass" if passes(r) else "FAIL")
    return (f"{label:26s} {rate_s} {r['rps']:7.1f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
            f"{r['max_ms']:8.1f} {r['errors']:6d} {r['send_lag_p99_ms']:6.1f} {verdict:4s} {rss}")


def ratios(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """After/before ratios of the exog runs, bracketed (worst and best pairing)."""
    out = []
    for key, what in (("p99_ms", "p99"), ("rps", "req/s")):
        b, a = sorted(r[key] for r in before), sorted(r[key] for r in after)
        out.append(f"exog at 4 connections, {what} after / before: {a[0] / b[1]:.2f} to "
                   f"{a[1] / b[0]:.2f} (after {a[0]:.1f}-{a[1]:.1f}, before {b[0]:.1f}-"
                   f"{b[1]:.1f})")
    return out


def report(log: list, lines: list[str], load: tuple[float, float, float]) -> None:
    print(f"\n{'run':26s} {'rate/s':>7s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'max ms':>8s} {'errors':>6s} {'lag99':>6s} {'':4s} RSS MB start/end/max "
          "(server + model workers)")
    for label, rate, result in log:
        print(row(label, rate, result))
    for label, _, result in log:
        if "hold" in label:
            print(f"{label}: versions answering {result['versions']}"
                  + (f"; swapped to {result['swapped_to']}" if "swapped_to" in result else "")
                  + (f"; errors {result['error_kinds']}" if result["errors"] else "")
                  + f"; {result['distinct']} distinct of {result['n']} requests")
    print("\n".join(lines))
    print(f"lag99: the load generator's own send delay (p99 ms). Load average before/after "
          f"the run: {load[0]:.2f} / {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds of each hold")
    parser.add_argument("--exog-share", type=float, default=0.1,
                        help="share of requests with exog in the mixed workload")
    parser.add_argument("--home", type=Path, help="state folder (models trained once there)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="a checkout of the code before the change, for the baseline")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        _generator(json.loads(args.drive))
        return 0
    load = os.getloadavg()
    home = args.home or Path(tempfile.mkdtemp(prefix="ff-load-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["FORECASTFLOW_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    args.versions = champions(home)
    print(f"state {home}; versions {args.versions}; load average {load[0]:.2f}")
    log: list = []
    before = [baseline(home, args.baseline_tree, args.baseline_seconds, 1)]
    log.append(("exog 4 conn, before (1)", "closed", before[0]))
    process, base = start(home, None)
    try:
        after = [exog_p99(base, args.baseline_seconds, 2)]
        log.append(("exog 4 conn, after (1)", "closed", after[0]))
        rates = [workload(process, base, share, args, log) for share in (0.0, args.exog_share)]
        after.append(exog_p99(base, args.baseline_seconds, 3))
        log.append(("exog 4 conn, after (2)", "closed", after[1]))
    finally:
        stop(process)
        champions(home)  # the first versions are champions again
    before.append(baseline(home, args.baseline_tree, args.baseline_seconds, 4))
    log.append(("exog 4 conn, before (2)", "closed", before[1]))
    lines = [*ratios(before, after), *(
        f"highest rate held {args.hold:.0f} s with p99 <= {TARGET_P99_MS:.0f} ms and 0 errors, "
        f"{what}: " + (f"{rate:.0f}/s" if rate else "none of the rates tried")
        for what, rate in zip(("exog-free", f"{args.exog_share:.0%} exog"), rates,
                              strict=True))]
    report(log, lines, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
