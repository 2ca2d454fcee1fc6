"""The serving folder, ``<state>/serving/<problem>/``: a copy of each served version's model
folder (``<version>/``), the version to serve on the next start (``champion.json``) and
serving cards written for versions registered without one (``v<version>.json``).

A restart serves from here without a registry round trip or an MLflow import."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecastflow import storage

log = logging.getLogger("forecastflow.serve")


@dataclass(frozen=True)
class ServingFolder:
    root: Path

    def version_dir(self, problem: str, version: str) -> Path:
        return self.root / problem / str(version)

    def pointer(self, problem: str) -> Path:
        return self.root / problem / "champion.json"

    def write_pointer(self, problem: str, version: str, family: str,
                      metrics: dict[str, float], sha256: str | None = None) -> None:
        """Remember ``version`` as the champion to serve on the next start (with the model
        checksum recorded in the registry, checked before the copy is unpickled)."""
        storage.write_json({"version": version, "family": family, "metrics": metrics,
                            "sha256": sha256}, self.pointer(problem))

    def card_path(self, problem: str, version: str) -> Path:
        return self.root / problem / f"v{version}.json"

    def read_card(self, problem: str, version: str) -> dict[str, Any] | None:
        """The version's serving card: logged with the model (``serving_card.json``) or, for
        models registered without one, written by this server (``v<version>.json``); None
        when there is none or it cannot be read (logged)."""
        path = self.card_path(problem, version)
        try:
            card = (storage.read_json(path) if path.exists()
                    else storage.read_pyfunc_card(self.version_dir(problem, version)))
            if card is None:
                return None
            missing = sorted({"origin", "meta", "table"} - set(card))
            if missing:
                raise KeyError(f"missing {missing}")
            if str(card.get("version", version)) != version:
                raise ValueError(f"card is for version {card['version']}")
        except (storage.ModelFolderError, OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s: serving card of v%s unreadable (%s); reading the model",
                        problem, version, err)
            return None
        return card

    def write_card(self, problem: str, version: str, model: Any,
                   meta: dict[str, Any]) -> dict[str, Any] | None:
        """Store a serving card for a model registered without one and return it (a
        start-up shortcut: failing to write it is logged, not raised, and gives None)."""
        from forecastflow.lifecycle.contract import ForecastRequestError, serving_card
        from forecastflow.models.base import ModelError

        try:
            card = {"version": version, **serving_card(model, meta)}
            storage.write_json(card, self.card_path(problem, version), compact=True)
        except (ForecastRequestError, ModelError, OSError) as err:
            log.warning("%s: no serving card for v%s: %s", problem, version, err)
            return None
        return card
