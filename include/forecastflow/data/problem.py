"""Problem declarations: the YAML schema, its validation and discovery.

A problem is one YAML file. :func:`load_problem` validates it with pydantic and raises
:class:`ProblemConfigError` naming the file and the offending field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from forecastflow.connections import masked
from forecastflow.errors import UserInputError

TransformName = Literal["none", "log", "diff", "log-diff"]
MetricName = Literal["rmse", "mae", "mape", "smape", "mase", "coverage"]
GapPolicy = Literal["reject", "interpolate", "ffill", "zero"]

# Default seasonal period per pandas frequency prefix.
_SEASON_BY_FREQ = {"Y": 1, "A": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "B": 5, "h": 24, "H": 24}

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_YAML_BYTES = 1024 * 1024  # a problem file is a few hundred bytes
MAX_YAML_VALUES = 100_000  # YAML aliases can make a small file expand without bound
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"  # [schema.]table


class ProblemConfigError(UserInputError):
    """A problem YAML is missing, unreadable or invalid; the message names file and field."""


class _Strict(BaseModel):
    """Unknown keys, values of another type (``horizon: "6"``, ``coverage: true``) and
    infinite or NaN numbers are refused, at every level."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Column = Annotated[str, Field(min_length=1)]


class Distribution(_Strict):
    """A numeric range sampled by random search (``log`` for scale parameters)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log-scale range needs low > 0, got {self.low}")
        return self


def _search_kind(value: Any) -> str | None:
    if isinstance(value, list):
        return "list"
    return "range" if isinstance(value, dict | Distribution) else None


# A search space: a list of values, or a range (errors say which: ``....range.low``).
SearchValue = Annotated[
    Annotated[list[Any], Tag("list")] | Annotated[Distribution, Tag("range")],
    Discriminator(_search_kind, custom_error_type="search_space",
                  custom_error_message="expected a list of values or a range "
                                       "{low, high, log, integer}")]


class ModelSpec(_Strict):
    """One model family with its fixed parameters and search space."""

    family: str
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, SearchValue] = Field(default_factory=dict)
    transform: TransformName | None = None
    max_trials: int | None = Field(default=None, ge=1)

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        from forecastflow.models import FAMILIES

        if value not in FAMILIES:
            raise ValueError(f"unknown model family {value!r}; choose from {sorted(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _known_params(self) -> ModelSpec:
        from forecastflow.models import FAMILIES

        allowed = [p for p in FAMILIES[self.family].param_names() if p != "coverage"]
        for where, names in (("params", self.params), ("search", self.search)):
            unknown = sorted(set(names) - set(allowed))
            if unknown:
                raise ValueError(f"{where}: {self.family} has no parameter(s) {unknown}; "
                                 f"allowed: {allowed} (interval coverage is set per problem)")
        return self

    @field_validator("search")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, space in value.items():
            if isinstance(space, list) and not space:
                raise ValueError(f"search space for {name!r} is an empty list")
        return value


class BacktestConfig(_Strict):
    """Rolling-origin evaluation: ``windows`` cutoffs, ``step`` periods apart."""

    windows: int = Field(default=3, ge=1, le=100)
    step: int | None = Field(default=None, ge=1)
    mode: Literal["expanding", "sliding"] = "expanding"
    window_length: int | None = Field(default=None, ge=2)
    min_train: int | None = Field(default=None, ge=2)
    # Re-estimate at every window (true), only at the first (false: later windows move the
    # first fit's origin with the same parameters, as statsforecast's cross_validation with
    # refit=False), or every k-th window (k). Omitted: every window below
    # REFIT_MAX_SERIES series, the first only from there on.
    refit: bool | int | None = None

    @field_validator("refit")
    @classmethod
    def _refit_positive(cls, value: bool | int | None) -> bool | int | None:
        if value is not None and not isinstance(value, bool) and value < 1:
            raise ValueError(f"refit must be true, false or a window count >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _sliding_needs_length(self) -> BacktestConfig:
        if self.mode == "sliding" and self.window_length is None:
            raise ValueError("mode 'sliding' needs window_length (training periods per window)")
        return self


class PromotionConfig(_Strict):
    """When a challenger becomes champion: it beats seasonal naive and the current champion
    (re-scored on the same windows) by ``margin`` (relative)."""

    margin: float = Field(default=0.0, ge=0.0, lt=1.0)
    first_must_beat_baseline: bool = True


class MonitoringConfig(_Strict):
    """Realized accuracy of the stored forecasts: retrain when the realized MASE of the
    current champion exceeds ``max_mase`` over at least ``min_points`` forecast points."""

    max_mase: float | None = Field(default=1.5, gt=0.0)
    min_points: int = Field(default=1, ge=1)


class ProblemConfig(_Strict):
    """A forecasting problem as declared in YAML."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    source: str
    table: str | None = Field(default=None, pattern=TABLE_PATTERN)
    query: str | None = None
    query_params: dict[str, Any] = Field(default_factory=dict)
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    aws_conn_id: str | None = None
    # CSV sources: the files' text encoding (a Python codec name); omitted: UTF-8, or what a
    # byte order mark says (UTF-8, UTF-16, UTF-32).
    encoding: str | None = None
    forecast_store: str | None = None
    time_column: Column
    target: list[Column] = Field(min_length=1)
    exog: list[Column] = Field(default_factory=list)
    id_column: Column | None = None
    frequency: str | None = None
    season_length: int | None = Field(default=None, ge=1)
    horizon: int = Field(ge=1, le=1000)
    max_horizon: int | None = Field(default=None, ge=1, le=10_000)
    transform: TransformName = "none"
    gaps: GapPolicy = "reject"
    max_gap: int | None = Field(default=None, ge=1)
    drop_invalid_series: bool = False
    # Panels whose series end at different dates: forecast each from its own last observation
    # (own_origin), or drop those that end before the panel's last date (drop).
    ragged_ends: Literal["own_origin", "drop"] = "own_origin"
    # Omitted: candidates chosen from the data (forecastflow.evaluation.defaults).
    models: list[ModelSpec] | None = Field(default=None, min_length=1)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    metric: MetricName = "mase"
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    coverage: float = Field(default=0.9, gt=0.0, lt=1.0)
    # Scale the champion's interval half-widths per step so its backtest errors are covered
    # at the nominal rate (forecastflow.evaluation.calibration).
    calibrate_intervals: bool = True
    schedule: str | None = "@daily"
    max_trials: int = Field(default=20, ge=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # numpy and scikit-learn's range
    series_limit: int | None = Field(default=None, ge=1)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("target", mode="before")
    @classmethod
    def _target_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("exog", mode="before")
    @classmethod
    def _exog_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        from forecastflow.data.sources import SourceError, reader_for

        _no_nul(value)
        try:
            reader_for(value)
        except SourceError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("forecast_store")
    @classmethod
    def _store_scheme(cls, value: str | None) -> str | None:
        from forecastflow.data.sources import is_sql, scheme_of

        _no_nul(value or "")
        if value and "://" in value and scheme_of(value) not in ("file", "s3") and not is_sql(
                value):
            raise ValueError(f"forecast_store {value!r}: use a folder, file://, s3:// or a "
                             "database URL (sql://<connection id>, postgresql://...)")
        return value

    @model_validator(mode="after")
    def _source_options(self) -> ProblemConfig:
        from forecastflow.data.sources import is_sql, scheme_of

        if is_sql(self.source):
            if bool(self.table) == bool(self.query):
                raise ValueError(f"source {masked(self.source)!r} is a database: declare exactly "
                                 "one of table or query")
        elif self.table or self.query or self.query_params:
            raise ValueError(f"table, query and query_params apply to SQL sources, not "
                             f"{masked(self.source)!r}")
        if scheme_of(self.source) != "s3" and (self.endpoint_url or self.aws_conn_id):
            raise ValueError(f"endpoint_url and aws_conn_id apply to s3:// sources, not "
                             f"{masked(self.source)!r}")
        if self.encoding and scheme_of(self.source) not in ("file", "s3"):
            raise ValueError(f"encoding applies to CSV files (local or s3://), not "
                             f"{masked(self.source)!r}")
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            "a".encode(value)  # also refuses codecs that are not text (base64, rot13)
        except LookupError as err:
            raise ValueError(f"encoding {value!r} is not a Python text codec ({err}); e.g. "
                             "utf-8, cp1252, latin-1, utf-16") from None
        return value

    @field_validator("frequency")
    @classmethod
    def _valid_frequency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(value)
        except ValueError as err:
            raise ValueError(f"{value!r} is not a pandas frequency alias ({err})") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        presets = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
        if value is None or value in presets:
            return value
        if len(value.split()) == 5 and _valid_cron(value):
            return value
        raise ValueError(f"schedule {value!r} is neither a preset {sorted(presets)} nor a "
                         "valid 5-field cron expression")

    @model_validator(mode="after")
    def _columns_consistent(self) -> ProblemConfig:
        columns = [self.time_column, *self.target, *self.exog]
        if self.id_column:
            columns.append(self.id_column)
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            raise ValueError(f"columns used twice across time/target/exog/id: {duplicates}")
        if self.max_horizon is not None and self.max_horizon < self.horizon:
            raise ValueError(f"max_horizon ({self.max_horizon}) < horizon ({self.horizon})")
        return self

    # Derived settings -------------------------------------------------------------------

    @property
    def is_panel(self) -> bool:
        return self.id_column is not None

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Columns read as text whatever they look like (the series id)."""
        return (self.id_column,) if self.id_column else ()

    @property
    def is_multivariate(self) -> bool:
        return len(self.target) > 1

    @property
    def horizon_limit(self) -> int:
        """Largest horizon a forecast request may ask for."""
        return self.max_horizon or self.horizon

    def seasonality(self, frequency: str | None = None) -> int:
        """Seasonal period: declared ``season_length`` or the frequency's usual one."""
        if self.season_length:
            return self.season_length
        freq = frequency or self.frequency
        if not freq:
            return 1
        from pandas.tseries.frequencies import to_offset

        offset = to_offset(freq)
        rule = offset.rule_code
        if len(rule) > 1 and rule[0] in "BC" and rule[1].isupper():
            rule = rule.lstrip("BC")  # business/custom variants: BMS -> MS, CBMS -> MS
        for prefix in ("Y", "A", "Q", "M", "W", "D", "B", "h", "H"):
            if rule.startswith(prefix):
                base = _SEASON_BY_FREQ[prefix]
                # A multiple (2D, 12h) keeps the cycle only if it divides it evenly.
                return base // offset.n if base % offset.n == 0 else 1
        return 1

    def backtest_step(self) -> int:
        return self.backtest.step or self.horizon

    def required_history(self, season: int | None = None) -> int:
        """Shortest series the backtest accepts: training for the first window plus the
        horizon and the steps between windows."""
        return self.min_train(season) + self.backtest_step() * (self.backtest.windows - 1) + (
            self.horizon
        )

    def min_train(self, season: int | None = None) -> int:
        if self.backtest.min_train:
            return self.backtest.min_train
        if self.backtest.mode == "sliding" and self.backtest.window_length:
            return self.backtest.window_length
        m = season or self.seasonality()
        return max(2 * m + 2, 10)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def _no_nul(value: str) -> None:
    if "\0" in value:
        raise ValueError(f"{value!r} holds a NUL character")


def _valid_cron(expression: str) -> bool:
    """Check a cron expression with croniter (installed with Airflow) when available."""
    try:
        from croniter import croniter
    except ImportError:  # library used without Airflow: the field count was checked
        return True
    return bool(croniter.is_valid(expression))


def _format_errors(err: ValidationError) -> str:
    """One line per error: the field path, the reason and the offending value (scalars, cut
    at 80 characters, passwords in URLs masked)."""
    lines = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        value = item.get("input")
        got = ""
        if item["type"] != "missing" and (value is None or isinstance(value, str | int | float)):
            shown = _shown(masked(value) if isinstance(value, str) else value)
            if repr(value) not in item["msg"]:  # validators name the value themselves
                got = f" (got {shown})"
        lines.append(f"  {where}: {item['msg']}{got}")
    return "\n".join(lines)


def _shown(value: object) -> str:
    """``repr(value)`` cut at 80 characters; non-ASCII text also escaped, so a look-alike
    letter (a Cyrillic e for a Latin one) shows as what it is."""
    shown = repr(value)
    if isinstance(value, str) and not value.isascii():
        shown += f" = {value!a}"
    return shown[:80] + ("..." if len(shown) > 80 else "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML would keep
    the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Only the keys written in this mapping: merged ones (``<<: *anchor``) may be
        # overridden. The merge keys are resolved first, as PyYAML's own loader does.
        own = [key_node for key_node, _ in node.value
               if key_node.tag != "tag:yaml.org,2002:merge"]
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node in own:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value (a name or a number)",
                    key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice in one mapping",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    """YAML to Python with duplicate keys refused and at most :data:`MAX_YAML_VALUES` values
    (aliases to aliases can make a few lines expand to billions)."""
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no objects
    budget, stack = MAX_YAML_VALUES, [data]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            raise yaml.YAMLError(f"more than {MAX_YAML_VALUES} values (aliases that expand "
                                 "without bound?)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return data


def parse_problem(data: dict[str, Any], origin: str = "<dict>") -> ProblemConfig:
    """Validate a problem given as a mapping; ``origin`` is used in error messages."""
    if not isinstance(data, dict):
        raise ProblemConfigError(f"{origin}: expected a mapping at top level, got {type(data)}")
    try:
        return ProblemConfig.model_validate(data)
    except ValidationError as err:
        raise ProblemConfigError(f"{origin}: invalid problem\n{_format_errors(err)}") from None


def load_problem(path: str | os.PathLike[str]) -> ProblemConfig:
    """Read and validate one problem YAML file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ProblemConfigError(f"{path}: {size} bytes; a problem file is at most "
                                     f"{MAX_YAML_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProblemConfigError(f"{path}: cannot read problem file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ProblemConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} "
                                 f"at byte offset {err.start})") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as err:
        raise ProblemConfigError(f"{path}: not valid YAML ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        data["source"] = _resolve_source(data["source"], path.parent)
    problem = parse_problem(data, origin=str(path))
    if problem.name != path.stem:
        raise ProblemConfigError(
            f"{path}: name {problem.name!r} must match the file name {path.stem!r}"
        )
    return problem


def _resolve_source(source: str, folder: Path) -> str:
    """A relative local path is relative to the YAML file's folder, not the working
    directory (Airflow workers run elsewhere)."""
    if "://" in source or "\0" in source:  # a NUL is refused by the validation
        return source
    path = Path(source).expanduser()
    return source if path.is_absolute() else str((folder / path).resolve())


def demo_problems_dir() -> Path:
    """The shipped demo problems (``include/problems`` next to the package)."""
    return Path(__file__).resolve().parents[2] / "problems"


def problem_dirs() -> list[Path]:
    """Shipped demos plus the folders in ``FORECASTFLOW_PROBLEMS_DIR`` (``os.pathsep``
    separated)."""
    dirs = [demo_problems_dir()]
    for entry in os.environ.get("FORECASTFLOW_PROBLEMS_DIR", "").split(os.pathsep):
        if entry.strip():
            dirs.append(Path(entry.strip()).expanduser())
    return dirs


def read_declaration(path: Path) -> dict[str, Any]:
    """A problem file's YAML as a mapping whose ``name`` matches :data:`NAME_PATTERN` and the
    file name; PyYAML only (DAG parsing and serving start-up read it). Raises ``ValueError``
    (or ``OSError`` / ``yaml.YAMLError``) naming the file."""
    data = _load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    name = str(data.get("name", ""))
    if not re.fullmatch(NAME_PATTERN, name) or name != path.stem:
        raise ValueError(f"{path}: name {name!r} must match {NAME_PATTERN} and the file name")
    return data


def problem_files(dirs: list[Path] | None = None) -> list[Path]:
    """YAML files declaring problems, in name order; later folders override earlier ones."""
    by_name: dict[str, Path] = {}
    for folder in dirs or problem_dirs():
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            by_name[path.stem] = path
    return [by_name[name] for name in sorted(by_name)]


def find_problem(name: str, dirs: list[Path] | None = None) -> ProblemConfig:
    """The problem called ``name`` (refused unless it matches :data:`NAME_PATTERN`: no
    paths, no look-alike characters)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ProblemConfigError(f"{_shown(name)} is not a problem name: names match "
                                 f"{NAME_PATTERN}")
    for path in problem_files(dirs):
        if path.stem == name:
            return load_problem(path)
    known = [p.stem for p in problem_files(dirs)]
    raise ProblemConfigError(f"no problem named {name!r}; known problems: {known}")
