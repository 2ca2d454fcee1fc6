"""No secret in the repository: every file git tracks (and every untracked file it would add,
so a secret is caught before its first commit) is scanned for cloud and API keys, private key
blocks, signed JWTs, Fernet keys, passwords inside URLs and literal values assigned to
password/secret/token/key settings. Secrets come from the environment (.env, Airflow
connections), never from the repository; the few values that look like secrets but are not
(test fixtures, URL shapes in docs) are listed in ``PLACEHOLDERS`` with a reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Literal values that look like a secret where they stand but are not one.
PLACEHOLDERS = {
    "test", "testing", "bench",  # keys for the in-process S3 stand-in (moto) in tests/bench
    "user", "pw", "password",  # the shape of a URL in docs: scheme://user:pw@host
    "wrong",  # a deliberately wrong password in the auth tests
    "s3cret-pw", "s3cret-token", "fuzz-token",  # test fixtures of the auth and error tests
}
# References, not values: ${VAR}, $VAR, $${VAR} (compose), {name} / %s (formatting), <name>,
# a masked *** and an elided ...
REFERENCE = re.compile(r"^(\$\$?\{?\w|\{\w*\}|%[(\w)]*s|<[^>]*>|\*{3}|\.\.\.)")

# Patterns that are a secret wherever they appear, in any file.
TOKENS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    "private key block": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{40,})"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}|"
                              r"hooks\.slack\.com/services/T\w+/B\w+/\w+"),
    "API token": re.compile(r"\b(?:AIza[\w-]{35}|[sr]k_live_[A-Za-z0-9]{20,}|sk-(?:proj-|ant-)?"
                            r"[\w-]{32,}|glpat-[\w-]{20,}|npm_[A-Za-z0-9]{36}|hf_[A-Za-z]{34}|"
                            r"pypi-AgEIcHlwaS5vcmc[\w-]{50,})"),
    "signed JWT": re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"),
    "Fernet key": re.compile(r"(?<![\w-])[\w-]{43}=(?![\w=-])"),
    "bearer token": re.compile(r"\bBearer [\w.~+/-]{20,}=*"),
}
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:([^\s/@'\"]+)@", re.I)

# Assignments to a setting whose name says it holds a secret, in config and Python files.
KEY = (r"[\w.-]*(?:password|passwd|secret|token|api_?key|access_?key|private_?key|fernet_?key|"
       r"credentials?)[\w.-]*")
NOT_A_VALUE = re.compile(r"_(?:file|path|dir|env|var|name|type|url|uri|ttl|seconds)$", re.I)
CONFIG_ASSIGNMENT = re.compile(  # KEY=value, KEY: value, - KEY=value, ENV KEY=value
    rf"""^\s*(?:-\s*|export\s+|ENV\s+)?["']?(?P<key>{KEY})["']?[ \t]*[:=][ \t]*"""
    r"(?P<value>[^#\n]*)",
    re.I | re.M)
PY_ASSIGNMENT = re.compile(  # KEY = "value", KEY="value", "KEY": "value"
    rf"""(?<![\w.])["']?(?P<key>{KEY})["']?[ \t]*[:=][ \t]*(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)""",
    re.I)
CONFIG_SUFFIXES = {".yaml", ".yml", ".ini", ".cfg", ".toml", ".env", ".sh", ".example"}
CONFIG_NAMES = {"Dockerfile", "Makefile", ".env"}
# Files that hold secrets by their nature and never belong in git.
SECRET_FILES = re.compile(r"(^|/)(\.env|\.netrc|\.pypirc|id_(rsa|dsa|ecdsa|ed25519)|"
                          r"cluster\.json|passwords\.json|credentials)$|\.(pem|key|p12|pfx)$")


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def placeholder(value: str) -> bool:
    """``value`` is a reference or a listed non-secret, not a secret."""
    value = value.strip().strip("\"'")
    return not value or value in PLACEHOLDERS or bool(REFERENCE.match(value))


def literal_assignments(path: str, text: str) -> list[tuple[int, str]]:
    """(offset, key) of every secret-named setting given a literal value in ``path``."""
    name = Path(path).name
    if Path(path).suffix == ".py":
        pattern = PY_ASSIGNMENT
    elif Path(path).suffix in CONFIG_SUFFIXES or name in CONFIG_NAMES:
        pattern = CONFIG_ASSIGNMENT
    else:
        return []
    found = []
    for match in pattern.finditer(text):
        key, value = match.group("key"), match.group("value").strip()
        if NOT_A_VALUE.search(key) or re.fullmatch(r"[\d.]+|true|false|null|none|~|\|-?|>-?",
                                                   value.strip("\"'"), re.I):
            continue
        if not placeholder(value) and not re.search(r"\s", value.strip("\"'")):
            found.append((match.start("value"), key))
    return found


def scan_text(path: str, text: str) -> list[Finding]:
    """Every secret-like literal in ``text`` (the content of ``path``)."""
    hits: list[tuple[int, str]] = []
    for rule, pattern in TOKENS.items():
        hits += [(m.start(), rule) for m in pattern.finditer(text)]
    hits += [(m.start(1), "password in a URL") for m in URL_PASSWORD.finditer(text)
             if not placeholder(m.group(1))]
    hits += [(offset, f"literal value for {key}")
             for offset, key in literal_assignments(path, text)]
    if SECRET_FILES.search(path) and not path.endswith(".env.example"):
        hits.append((0, "a file that holds secrets by its nature"))
    return sorted(Finding(path, text.count("\n", 0, offset) + 1, rule) for offset, rule in hits)


def scan_files(root: Path, paths: list[str]) -> list[Finding]:
    """Scan the text files among ``paths`` (relative to ``root``); binary files are skipped."""
    findings: list[Finding] = []
    for rel in paths:
        file = root / rel
        if not file.is_file():  # deleted in the work tree
            continue
        data = file.read_bytes()
        if b"\0" in data:
            continue
        findings += scan_text(rel, data.decode("utf-8", errors="replace"))
    return findings


def repository_files(root: Path) -> list[str]:
    """Tracked files plus untracked ones git would add (not ignored)."""
    out = subprocess.run([shutil.which("git") or "git", "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], cwd=root, capture_output=True, timeout=60,
                         check=True)
    return sorted({p for p in out.stdout.decode().split("\0") if p})


def test_no_secret_in_the_repository():
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files to scan")
    files = repository_files(ROOT)
    assert "docker-compose.yaml" in files and len(files) > 50
    findings = scan_files(ROOT, files)
    assert findings == [], "secret-like literals (move them to .env / the environment):\n" + \
        "\n".join(map(str, findings))


# Fake secrets for the planted-secret tests, assembled at run time so that this file does not
# contain them literally (the repository scan reads it too).
FAKE_AWS = "AKIA" + "Q7XH2MZ4" * 2
FAKE_PW = "Tr0ub4dor" + "-x9-" + "horse"
FAKE_FERNET = "q3TfX2-Vb9kYw_8pLmN4rS6tU1vZ0aBcDeFgHiJkLmM" + "="
FAKE_GITHUB = "ghp_" + "a1B2c3D4e5" * 4
FAKE_JWT = ".".join(["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiJhZG1pbiJ9", "c2lnbmF0dXJlLWJ5dGVz"])
PEM_BLOCK = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize(("name", "content", "rule"), [
    ("settings.py", f'AWS_KEY_ID = "{FAKE_AWS}"\n', "AWS access key id"),
    ("deploy/key.txt", PEM_BLOCK, "private key block"),
    ("notes.md", f"token {FAKE_GITHUB}\n", "GitHub token"),
    ("notes.md", f"curl -H 'Authorization: Bearer {FAKE_JWT}'\n", "signed JWT"),
    ("airflow.cfg", f"fernet_key = {FAKE_FERNET}\n", "Fernet key"),
    ("docs/run.md", f"postgresql://airflow:{FAKE_PW}@db:5432/airflow\n",
     "password in a URL"),
    ("docker-compose.yaml", f"    POSTGRES_PASSWORD: {FAKE_PW}\n",
     "literal value for POSTGRES_PASSWORD"),
    ("docker-compose.yaml", f"      - REDIS_PASSWORD={FAKE_PW}\n",
     "literal value for REDIS_PASSWORD"),
    (".env.example", f"AIRFLOW_JWT_SECRET={FAKE_PW}\n", "literal value for AIRFLOW_JWT_SECRET"),
    ("deploy/mlflow-auth.ini", f"admin_password = {FAKE_PW}\n",
     "literal value for admin_password"),
    ("serve.py", f'create_app(hub, api_token="{FAKE_PW}")\n', "literal value for api_token"),
    ("client.py", f'login = {{"username": "admin", "password": "{FAKE_PW}"}}\n',
     "literal value for password"),
])
def test_a_planted_secret_is_found(tmp_path, name, content, rule):
    """Each rule catches its kind of secret in a scanned file."""
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(f"# line one\n{content}")
    findings = scan_files(tmp_path, [name])
    assert Finding(name, 2, rule) in findings, findings


def test_a_planted_secret_in_a_git_checkout_fails_the_scan(tmp_path):
    """The whole path the repository test takes: git lists the file, the scan reports it."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    (tmp_path / ".env.example").write_text("S3_ACCESS_KEY=\nS3_SECRET_KEY=\n")
    (tmp_path / "settings.ini").write_text(f"[s3]\naccess_key = {FAKE_AWS}\n")
    assert repository_files(tmp_path) == [".env.example", "settings.ini"]
    assert [str(f) for f in scan_files(tmp_path, repository_files(tmp_path))] == [
        "settings.ini:2: AWS access key id", "settings.ini:2: literal value for access_key"]


@pytest.mark.parametrize("content", [
    "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}\n",
    "url: postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD}@postgres:5432/airflow\n",
    'cmd: "postgresql://mlflow:$${MLFLOW_DB_PASSWORD}@postgres:5432/mlflow"\n',
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE: /opt/airflow/auth/passwords.json\n",
    "source: sql://warehouse  # AIRFLOW_CONN_WAREHOUSE=postgresql://user:pw@host:5432/db\n",
    "REDIS_PASSWORD=\n",
    "auth_cache_ttl_seconds = 60\n",
    "password: <the admin password>\n",
])
def test_references_and_listed_placeholders_pass(tmp_path, content):
    (tmp_path / "settings.yaml").write_text(content)
    assert scan_files(tmp_path, ["settings.yaml"]) == []


@pytest.mark.parametrize("content", [
    'headers["Authorization"] = f"Bearer {token}"\n',
    'password = os.environ["MLFLOW_TRACKING_PASSWORD"]\n',
    'rest("POST", url, {"username": "admin", "password": cfg["secrets"]["admin"]})\n',
    'TOKEN = "s3cret-token"\n',
    "return url.replace(f\":{password}@\", \":***@\", 1)\n",
])
def test_python_that_reads_secrets_passes(tmp_path, content):
    (tmp_path / "module.py").write_text(content)
    assert scan_files(tmp_path, ["module.py"]) == []
