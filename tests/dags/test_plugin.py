"""The Airflow plugin declares the MLflow extra link under the key the DAG pushes."""

from __future__ import annotations

import importlib.util

from tests.dags.conftest import ROOT


def test_plugin_declares_the_mlflow_link():
    spec = importlib.util.spec_from_file_location("forecastflow_links",
                                                  ROOT / "plugins" / "forecastflow_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (link,) = module.ForecastflowPlugin.global_operator_extra_links
    assert link.name == "MLflow run"
    # One constant: the DAG files push under the key the plugin reads.
    from forecastflow.dagspec import LINK_KEY

    assert link.xcom_key == LINK_KEY
    for dag_file in ("forecastflow_training.py", "forecastflow_serving.py"):
        source = (ROOT / "dags" / dag_file).read_text()
        assert "LINK_KEY" in source and "_link_MLflowRunLink" not in source, dag_file
