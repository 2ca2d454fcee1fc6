"""``forecastflow`` command line: list, validate and run problems, and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from forecastflow.data.demo_sources import DEFAULT_S3, DEFAULT_SQL
from forecastflow.data.problem import ProblemConfigError, find_problem, load_problem, problem_files
from forecastflow.data.sources import SourceUnavailableError
from forecastflow.errors import UserInputError

DEMO_PROBLEMS = ("us_macro", "shop_sales", "electricity_daily")


def _problem(ref: str):
    path = Path(ref)
    return load_problem(path) if path.suffix in (".yaml", ".yml") else find_problem(ref)


def cmd_list(args: argparse.Namespace) -> int:
    for path in problem_files():
        try:
            p = load_problem(path)
            print(f"{p.name:20s} {p.schedule or '-':10s} {p.source}  ({path})")
        except ProblemConfigError as err:
            print(f"{path.stem:20s} INVALID: {err}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from forecastflow.data.validation import load_data

    problem = _problem(args.problem)
    data = load_data(problem)
    print(f"{problem.name}: OK - {max(len(data.series_ids), 1)} series, {len(data.y)} rows, "
          f"freq {data.freq}, season {data.season}, fingerprint {data.fingerprint()}")
    for sid, reason in data.dropped.items():
        print(f"  dropped {sid}: {reason}")
    return 0


def run_and_report(name: str, out_dir: Path, max_trials: int | None = None,
                   families: list[str] | None = None) -> dict:
    """Run one problem, write its artifacts under ``out_dir`` and return the summary."""
    from forecastflow import storage
    from forecastflow.evaluation.plots import plot_backtest, plot_forecast
    from forecastflow.workflow import load_data, run_problem

    problem = find_problem(name)
    data = load_data(problem)
    report = run_problem(problem, families=families, max_trials=max_trials, data=data)
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    family = report.selection.best.trial.family
    report.backtest.windows.to_csv(folder / "backtest_windows.csv", index=False)
    plot_backtest(report.backtest.predictions, data.y, folder / "backtest.png",
                  title=f"{name}: {family}, forecast vs actual per backtest window")
    scenario = f" (exog {', '.join(data.exog)} held at last value)" if data.exog else ""
    plot_forecast(data.y, report.forecast, folder / "forecast.png",
                  title=f"{name}: {family} forecast{scenario}")
    report.forecast.to_long().to_csv(folder / "forecast.csv", index=False)
    storage.write_model(report.model, folder / "model.pkl")
    storage.write_json(summary, folder / "summary.json")
    summary["artifacts"] = str(folder)
    return summary


def cmd_run(args: argparse.Namespace) -> int:
    from forecastflow.storage import state_dir

    names = args.problems or list(DEMO_PROBLEMS)
    out = state_dir() / "runs"
    rows = []
    for name in names:
        print(f"== {name}: searching ...", flush=True)
        summary = run_and_report(name, out, max_trials=args.max_trials,
                                 families=args.families)
        rows.append(summary)
        print(json.dumps(summary, indent=2, default=str) if args.json else
              f"   selected {summary['family']} {summary['params']} "
              f"(transform {summary['transform']}): MASE {summary['metrics']['mase']:.3f} vs "
              f"seasonal naive {summary['baseline_mase']:.3f} (ratio {summary['mase_ratio']:.2f}),"
              f" coverage {summary['metrics']['coverage']:.2f}, {summary['trials']} trials in "
              f"{summary['seconds']:.0f}s\n   artifacts: {summary['artifacts']}", flush=True)
    print("\nproblem              family               MASE  baseline  ratio")
    for s in rows:
        print(f"{s['problem']:20s} {s['family']:18s} {s['metrics']['mase']:6.3f} "
              f"{s['baseline_mase']:8.3f} {s['mase_ratio']:6.2f}")
    return 0


def repo_root() -> Path:
    from forecastflow.data.problem import demo_problems_dir

    return demo_problems_dir().parent.parent


def airflow_env() -> dict[str, str]:
    """Environment for the embedded default: Airflow on SQLite under the state folder, this
    project's dags/ and plugins/, no example DAGs."""
    import os

    from forecastflow.storage import state_dir

    env = dict(os.environ)
    root = repo_root()
    bin_dir = Path(sys.executable).parent
    env.setdefault("AIRFLOW_HOME", str(state_dir() / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["FORECASTFLOW_HOME"] = str(state_dir())
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the training DAGs of the demo problems with `airflow dags test`."""
    import subprocess

    from forecastflow.lifecycle.tracking import tracking_uri

    given = user_locations()  # before MLflow's client exports MLFLOW_TRACKING_URI in-process
    env = airflow_env()
    airflow = str(Path(sys.executable).parent / "airflow")
    print(f"Airflow home: {env['AIRFLOW_HOME']} (SQLite); MLflow: {tracking_uri()}",
          flush=True)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    failed = []
    for name in args.problems or list(DEMO_PROBLEMS):
        # Training, then batch forecasts from the champion (what its Asset event triggers).
        for dag_id in (f"train_{name}", f"forecast_{name}"):
            print(f"== airflow dags test {dag_id} ...", flush=True)
            log_path = Path(env["AIRFLOW_HOME"]) / f"demo_{dag_id}.log"
            with log_path.open("w") as handle:
                result = subprocess.run([airflow, "dags", "test", dag_id], env=env,
                                        stdout=handle, stderr=subprocess.STDOUT, check=False)
            status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
            print(f"   {status}; log: {log_path}", flush=True)
            if result.returncode:
                failed.append(dag_id)
                break
    cmd_champions(args)
    store = Path(env["FORECASTFLOW_HOME"]) / "forecasts"
    print(f"\nBatch forecasts (Parquet, partitioned by problem and run): {store}")
    for part in sorted(store.glob("problem=*/run=*/forecasts.parquet")):
        print(f"  {part.relative_to(store)}  (+ forecast.png)")
    for name in args.problems or list(DEMO_PROBLEMS):
        declared = find_problem(name).forecast_store
        if declared:
            print(f"  {name}: in its own store {declared}")
    print(ui_hints(env["AIRFLOW_HOME"], given))
    return 1 if failed else 0


def user_locations() -> dict[str, str]:
    """``FORECASTFLOW_HOME`` and ``MLFLOW_TRACKING_URI`` as the user set them."""
    import os

    return {key: os.environ[key] for key in ("FORECASTFLOW_HOME", "MLFLOW_TRACKING_URI")
            if os.environ.get(key)}


def ui_hints(airflow_home: str, given: dict[str, str] | None = None) -> str:
    """Where to look next, as commands that open this run's state folder and MLflow store:
    ``FORECASTFLOW_HOME`` and ``MLFLOW_TRACKING_URI``, when set, are part of the command."""
    import shlex

    from forecastflow.lifecycle.tracking import mlflow_ui_command, tracking_uri

    given = user_locations() if given is None else given
    prefix = "".join(f"{key}={shlex.quote(value)} " for key, value in given.items())
    mlflow_ui = (f"{prefix}make mlflow-ui -> http://localhost:5000  (store {tracking_uri()})"
                 if mlflow_ui_command() else f"{tracking_uri()}  (the tracking server's UI)")
    return f"""
Airflow UI:  {prefix}make airflow-ui -> http://localhost:8080  (airflow standalone on this
             project's DAGs, AIRFLOW_HOME={airflow_home}; it prints the admin password)
MLflow UI:   {mlflow_ui}
REST API:    {prefix}make serve -> http://localhost:8000/docs  (forecastflow serve)
Rollback:    {prefix}.venv/bin/forecastflow rollback <problem>   (champion back to 'previous')"""


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    """The MLflow UI on the store every other command uses (or the server's address)."""
    import os

    from forecastflow.lifecycle.tracking import mlflow_ui_command, tracking_uri

    command = mlflow_ui_command(args.host, args.port)
    if command is None:
        print(f"MLflow tracking server {tracking_uri()}: open it in a browser (its UI is "
              "the one to use)")
        return 0
    print(f"MLflow UI on {tracking_uri()}: http://{args.host}:{args.port}", flush=True)
    os.execv(command[0], command)  # replaces this process: Ctrl-C stops the UI
    return 0  # pragma: no cover - not reached


def airflow_ui_command() -> tuple[list[str], dict[str, str]]:
    """``airflow standalone`` on this project's DAGs and state folder."""
    return [str(Path(sys.executable).parent / "airflow"), "standalone"], airflow_env()


def cmd_airflow_ui(args: argparse.Namespace) -> int:
    """Airflow (scheduler, API server and UI) for this project on the embedded default."""
    import os

    from forecastflow.lifecycle.tracking import tracking_uri

    command, env = airflow_ui_command()
    print(f"Airflow home {env['AIRFLOW_HOME']}, MLflow {tracking_uri()}; UI on "
          "http://localhost:8080 (the admin password is printed below)", flush=True)
    os.execve(command[0], command, env)
    return 0  # pragma: no cover - not reached


def cmd_champions(args: argparse.Namespace) -> int:
    """Champion version, family and backtest metrics of every problem."""
    from forecastflow.lifecycle import registry

    print("\nproblem              champion  previous  family             backtest MASE  "
          "seasonal naive  coverage")
    for path in problem_files():
        name = path.stem
        champion = registry.alias_version(name, registry.CHAMPION)
        if champion is None:
            print(f"{name:20s} -         (no champion yet)")
            continue
        previous = registry.alias_version(name, registry.PREVIOUS)
        tags = champion.tags

        def num(key: str, tags: dict = tags) -> str:
            return f"{float(tags[key]):.3f}" if key in tags else "?"

        print(f"{name:20s} v{champion.version:<8} "
              f"{'v' + str(previous.version) if previous else '-':9s} "
              f"{tags.get('family', '?'):18s} {num('backtest_mase'):>13s}  "
              f"{num('baseline_mase'):>14s}  {num('backtest_coverage'):>8s}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from forecastflow.lifecycle import registry

    try:
        old, new = registry.rollback(args.problem)
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.problem}: champion moved from v{old} back to v{new}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The REST API on the champions (FastAPI + uvicorn)."""
    from forecastflow.serving.app import serve

    serve(host=args.host, port=args.port, poll_seconds=args.poll_seconds,
          problems=args.problems or None, cache_size=args.cache_size,
          model_workers=args.model_workers)
    return 0


def cmd_demo_sources(args: argparse.Namespace) -> int:
    """Load the shop panel into the demo database table and S3 prefix."""
    from forecastflow.data.demo_sources import TABLE, seed

    done = seed(None if args.no_sql else args.sql, None if args.no_s3 else args.s3)
    if "sql" in done:
        print(f"SQL: {args.sql} table {TABLE}: {done['sql']}"
              + (" rows" if isinstance(done["sql"], int) else ""))
    if "s3" in done:
        print(f"S3:  {args.s3}: {done['s3']}" + (" monthly objects" if isinstance(
            done["s3"], int) else ""))
    print("Then: forecastflow demo shop_sales_sql shop_sales_s3")
    return 0 if all(isinstance(v, int) for v in done.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forecastflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every trial")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the declared problems").set_defaults(func=cmd_list)
    val = sub.add_parser("validate", help="check a problem's YAML and data")
    val.add_argument("problem", help="problem name or path to its YAML")
    val.set_defaults(func=cmd_validate)
    run = sub.add_parser("run", help="search, backtest and fit problems (default: the demos)")
    run.add_argument("problems", nargs="*", help=f"problem names (default {DEMO_PROBLEMS})")
    run.add_argument("--max-trials", type=int, default=None, help="per-family trial budget")
    run.add_argument("--families", nargs="+", default=None, help="only these model families")
    run.add_argument("--json", action="store_true", help="print full JSON summaries")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="run the demo problems' training DAGs with Airflow")
    demo.add_argument("problems", nargs="*", help=f"problem names (default {DEMO_PROBLEMS})")
    demo.set_defaults(func=cmd_demo)
    seed = sub.add_parser("demo-sources", help="load the shop panel into PostgreSQL and S3 "
                          "for the demo problems shop_sales_sql and shop_sales_s3")
    seed.add_argument("--sql", default=DEFAULT_SQL, help=f"database URL (default {DEFAULT_SQL})")
    seed.add_argument("--s3", default=DEFAULT_S3, help=f"S3 prefix (default {DEFAULT_S3}; "
                      "endpoint from AWS_ENDPOINT_URL)")
    seed.add_argument("--no-sql", action="store_true", help="skip the database")
    seed.add_argument("--no-s3", action="store_true", help="skip S3")
    seed.set_defaults(func=cmd_demo_sources)
    sub.add_parser("champions", help="champion model of every problem").set_defaults(
        func=cmd_champions)
    back = sub.add_parser("rollback", help="move a problem's champion back to 'previous'")
    back.add_argument("problem")
    back.set_defaults(func=cmd_rollback)
    mui = sub.add_parser("mlflow-ui", help="MLflow UI on this configuration's store")
    mui.add_argument("--host", default="127.0.0.1")
    mui.add_argument("--port", type=int, default=5000)
    mui.set_defaults(func=cmd_mlflow_ui)
    sub.add_parser("airflow-ui", help="airflow standalone on this project (UI on :8080)"
                   ).set_defaults(func=cmd_airflow_ui)
    srv = sub.add_parser("serve", help="REST API on every problem's champion (docs at /docs)")
    srv.add_argument("problems", nargs="*", help="problems to serve (default: all)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--poll-seconds", type=float, default=10.0,
                     help="how often to check the registry for a moved champion alias")
    srv.add_argument("--cache-size", type=int, default=1024,
                     help="identical requests answered from memory (0: off)")
    srv.add_argument("--model-workers", type=int, default=None,
                     help="processes computing forecasts that need the model, i.e. requests "
                     "with exog (default: one per core; 0: in the server process)")
    srv.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UserInputError as err:  # a YAML, data source or model setting; named in err
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SourceUnavailableError as err:  # a database or endpoint down; named in err
        print(f"error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
