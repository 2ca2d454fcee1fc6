"""Per-request CPU of an exog forecast (us_macro, VARMAX with exog ``tbilrate``) as a model
worker spends it: ``parse_request`` + ``check_request`` + ``run_forecast`` on a JSON body.

The champion is fitted here without Airflow (VARMAX(1, 0), trend c, log-diff; with
``--calibrated``, wrapped in per-step interval factors). ``N`` distinct bodies (random horizon
1..max_horizon, random tbilrate values) are answered after a warm-up; the CPU time
(``time.process_time``) of each is recorded and the median and p90 printed.

With ``--baseline-tree DIR`` (a checkout whose ``include/`` holds the code before a change),
the same pickled champion and bodies are run in child processes, bracketed: baseline,
current, baseline, current; the load average is printed with the after/before ratio, and
the answers of both trees are compared (bit-identical, else the largest relative difference).

    .venv/bin/python bench/exog_request.py [--n 300] [--calibrated] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "us_macro"


def build(calibrated: bool) -> tuple[Any, dict[str, Any]]:
    """The fitted us_macro champion and its metadata (read back from JSON, as served)."""
    from forecastflow.data.problem import find_problem
    from forecastflow.evaluation.search import Trial
    from forecastflow.lifecycle.contract import model_meta
    from forecastflow.models.calibrated import Calibrated
    from forecastflow.workflow import load_data

    problem = find_problem(PROBLEM)
    data = load_data(problem)
    trial = Trial("varmax", {"order": [1, 0], "trend": "c"}, "log-diff")
    model = trial.build(problem, data.season).fit(data.y, data.X)
    if calibrated:
        model = Calibrated.around(model, [1.1, 1.25, 0.9, 1.4])
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    return model, json.loads(json.dumps(meta))


def bodies(n: int, limit: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct request bodies: random horizons and tbilrate values."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = rng.randint(1, limit)
        rows = [{"tbilrate": round(rng.uniform(0.0, 15.0), 6)} for _ in range(h)]
        out.append(json.dumps({"horizon": h, "exog": rows}).encode())
    return out


def measure(model: Any, meta: dict[str, Any], work: list[bytes], warmup: int = 50,
            ) -> tuple[list[float], list[Any]]:
    """CPU seconds per request and the answers."""
    from forecastflow.serving.hub import Slot, run_forecast
    from forecastflow.serving.schemas import check_request, parse_request

    slot = Slot(PROBLEM, "1", "varmax", model, meta, {}, "", 0.0, "registry")

    def answer(body: bytes) -> dict[str, Any]:
        request = parse_request(body)
        check_request(slot, request)
        return run_forecast(slot, request)

    for body in work[:warmup]:
        answer(body)
    times, answers = [], []
    for body in work:
        start = time.process_time()
        out = answer(body)
        times.append(time.process_time() - start)
        answers.append(out["forecasts"])
    return times, answers


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": 1e3 * ordered[len(ordered) // 2],
            "p90_ms": 1e3 * ordered[int(0.9 * (len(ordered) - 1))]}


def child(path: str, out: str) -> None:
    """Run the pickled workload with the code on this interpreter's path."""
    with open(path, "rb") as handle:
        model, meta, work = pickle.load(handle)
    times, answers = measure(model, meta, work)
    Path(out).write_text(json.dumps({"times": times, "answers": answers}))


def run_tree(tree: Path | None, job: str, out: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str((tree or ROOT) / "include")
    subprocess.run([sys.executable, __file__, "--child", job, out], env=env, check=True)
    return json.loads(Path(out).read_text())


def compare(a: list[Any], b: list[Any]) -> str:
    """'identical' (to the byte, as JSON), or the largest relative difference of the numbers
    of two answer lists."""
    if json.dumps(a) == json.dumps(b):
        return "identical"
    worst = 0.0
    for rows_a, rows_b in zip(a, b, strict=True):
        for ra, rb in zip(rows_a, rows_b, strict=True):
            for key in ("forecast", "lower", "upper"):
                x, y = ra[key], rb[key]
                worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
            if {k: v for k, v in ra.items() if k not in ("forecast", "lower", "upper")} != {
                    k: v for k, v in rb.items() if k not in ("forecast", "lower", "upper")}:
                return "DIFFERENT (non-numeric fields)"
    return f"max relative difference {worst:.3g}"


def bracketed(model: Any, meta: dict[str, Any], work: list[bytes], baseline: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        job = str(Path(tmp) / "job.pkl")
        with open(job, "wb") as handle:
            pickle.dump((model, meta, work), handle)
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        load = [os.getloadavg()[0]]
        for i, (label, tree) in enumerate([("before", baseline), ("after", None)] * 2):
            result = run_tree(tree, job, str(Path(tmp) / f"out{i}.json"))
            runs[label].append(result)
            load.append(os.getloadavg()[0])
            print(f"{label:6s} {json.dumps(summary(result['times']))}", flush=True)
    medians = {k: [summary(r["times"])["median_ms"] for r in v] for k, v in runs.items()}
    best = min(medians["after"]) / max(medians["before"])
    worst = max(medians["after"]) / min(medians["before"])
    print(f"after / before (median CPU per request): {best:.2f} to {worst:.2f}")
    print(f"load average (1 min) during the runs: {min(load):.2f} to {max(load):.2f}")
    print("answers, before vs after:",
          compare(runs["before"][0]["answers"], runs["after"][0]["answers"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="requests measured")
    parser.add_argument("--calibrated", action="store_true",
                        help="champion with calibrated intervals (Calibrated wrapper)")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="checkout with the code before the change: bracketed comparison")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.child:
        child(*args.child)
        return
    model, meta = build(args.calibrated)
    work = bodies(args.n, int(meta["horizon_limit"]))
    if args.baseline_tree is not None:
        bracketed(model, meta, work, args.baseline_tree)
        return
    times, _ = measure(model, meta, work)
    print(f"{PROBLEM} exog request, {args.n} calls: {json.dumps(summary(times))}; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
