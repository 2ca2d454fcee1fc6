"""Names shared by the DAG files, the plugin and the stage bodies (standard library only:
DAG files and the plugin import it at parse time)."""

from __future__ import annotations

from datetime import timedelta

LINK_KEY = "_link_MLflowRunLink"  # XCom key of the plugin's "MLflow run" button
MAX_SEARCH_TASKS = 4  # mapped search tasks of one run at once; threads are sized from it
DEFAULT_ARGS = {"owner": "forecastflow", "retries": 2, "retry_delay": timedelta(seconds=30)}


def champion_asset_uri(name: str) -> str:
    """The Airflow Asset a problem's training DAG updates when its champion changes."""
    return f"x-forecastflow://champion/{name}"


def champion_asset(name: str):  # noqa: ANN201 - an airflow.sdk.Asset
    from airflow.sdk import Asset

    return Asset(name=f"forecastflow_{name}_champion", uri=champion_asset_uri(name))
