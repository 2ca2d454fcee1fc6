"""The cores a process may use, and counts set in the environment (foundation: ``os`` only,
so the light orchestration modules can use it without importing the model libraries)."""

from __future__ import annotations

import os


def cores() -> int:
    """Cores this process may run on (the CPU affinity mask, as a container or taskset sets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def env_count(name: str) -> int | None:
    """The positive integer in environment variable ``name``, None when it is unset."""
    override = os.environ.get(name)
    if not override:
        return None
    try:
        value = int(override)
    except ValueError:
        raise ValueError(f"{name}={override!r}: expected a positive integer") from None
    if value < 1:
        raise ValueError(f"{name}={override!r}: expected a positive integer")
    return value
