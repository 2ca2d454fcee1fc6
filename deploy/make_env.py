"""Write the compose deployment's ``.env``: every variable of ``.env.example`` that has no value
there gets a fresh random secret (a Fernet key for ``AIRFLOW_FERNET_KEY``); the others keep the
example's value. The file is created with mode 600 and never overwritten.

    python3 deploy/make_env.py            # writes .env next to docker-compose.yaml
    python3 deploy/make_env.py --out /secure/place/forecastflow.env

Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import string
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def new_secret(name: str) -> str:
    """A random value for the variable ``name``, in the shape its consumer accepts."""
    if name == "AIRFLOW_FERNET_KEY":  # 32 random bytes, url-safe base64 (cryptography.fernet)
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "S3_ACCESS_KEY":  # MinIO's root user: 20 upper-case letters and digits
        return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))
    if name == "S3_SECRET_KEY":  # MinIO's root password: 40 characters
        return secrets.token_hex(20)
    # Hex: safe unquoted in database and broker URLs, JSON, SQL literals and command lines.
    return secrets.token_hex(32)


def render(example: str) -> str:
    """``.env.example``'s text with every empty value replaced by a new secret."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and not value.strip():
            line = f"{name}={new_secret(name.strip())}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_env(out: Path, example: Path = ROOT / ".env.example") -> Path:
    """Create ``out`` (mode 600) from ``example``; refuse to replace an existing file."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render(example.read_text()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    try:
        write_env(args.out)
    except FileExistsError:
        print(f"{args.out} exists: not replaced (to rotate a secret, see docs/security.md)",
              file=sys.stderr)
        return 1
    print(f"wrote {args.out} (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
