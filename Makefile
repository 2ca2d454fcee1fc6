# Two commands do all the set-up on a fresh machine:
#   make demo   - create/update .venv, install, run the demo problems end to end
#   make test   - same install, then ruff and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The state folder (FORECASTFLOW_HOME, default ./.forecastflow) and the MLflow store
# (MLFLOW_TRACKING_URI, default SQLite in the state folder) are decided by the library, the
# same way for every target (demo, airflow-ui, mlflow-ui, serve). `make STATE=dir <target>` is
# FORECASTFLOW_HOME=dir.
ifeq ($(origin STATE),command line)
export FORECASTFLOW_HOME := $(abspath $(STATE))
endif

.PHONY: demo demo-sources cluster-demo library-demo test install lint bench airflow-ui mlflow-ui serve clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/forecastflow demo

# The shop panel into PostgreSQL (database forecastflow_demo) and S3 (AWS_ENDPOINT_URL), for
# the demo problems shop_sales_sql and shop_sales_s3: `forecastflow demo shop_sales_sql`.
demo-sources: install
	$(BIN)/forecastflow demo-sources

# The docker-compose topology natively (Celery workers, PostgreSQL, Redis, MLflow server on S3):
# up, then the demo problems trained through Airflow's REST API, with the worker of each task.
cluster-demo: install
	deploy/local-cluster up
	deploy/local-cluster demo us_macro shop_sales

# The same search, backtest and fit as a plain library run (no Airflow, no MLflow).
library-demo: install
	$(BIN)/forecastflow run

airflow-ui: install
	$(BIN)/forecastflow airflow-ui

serve: install
	$(BIN)/forecastflow serve --port 8000

mlflow-ui: install
	$(BIN)/forecastflow mlflow-ui --port 5000

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/accuracy.py
	cd bench && ../$(BIN)/python accuracy_panels.py
	cd bench && ../$(BIN)/python vectorized.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/sources.py

clean:
	rm -rf $(VENV) .forecastflow .pytest_cache .ruff_cache
