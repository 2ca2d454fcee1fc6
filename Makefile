# Two commands do all the set-up on a fresh machine:
#   make demo   - create/update .venv, install, run the demo problems end to end
#   make test   - same install, then ruff and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo library-demo test install lint bench airflow-ui mlflow-ui serve clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt constraints.txt pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/forecastflow demo

# The same search, backtest and fit as a plain library run (no Airflow, no MLflow).
library-demo: install
	$(BIN)/forecastflow run

STATE ?= $(CURDIR)/.forecastflow
AIRFLOW_ENV := AIRFLOW_HOME=$(STATE)/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins AIRFLOW__CORE__LOAD_EXAMPLES=False \
	FORECASTFLOW_HOME=$(STATE) PATH=$(CURDIR)/$(BIN):$$PATH

airflow-ui: install
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

serve: install
	FORECASTFLOW_HOME=$(STATE) $(BIN)/forecastflow serve --port 8000

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(STATE)/mlflow.db --port 5000

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) .forecastflow .pytest_cache .ruff_cache
