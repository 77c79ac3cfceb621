# Two commands: `make run` starts the platform, `make test` runs every test.
# Both create the virtual environment and install the pinned dependencies on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := -e libs -e libs/testing $(foreach service,$(wildcard services/*/pyproject.toml),-e $(dir $(service))) -e cli

.PHONY: run test bench install console clean-data

install: $(STAMP) console

# The operator console's build (console/dist), which the gateway serves at /console/.
console:
	bash scripts/ensure_console.sh

$(STAMP): requirements.txt libs/pyproject.toml libs/testing/pyproject.toml services/*/pyproject.toml cli/pyproject.toml
	bash scripts/bootstrap.sh $(PYTHON) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt $(PACKAGES)
	touch $(STAMP)

run: $(STAMP) console
	$(BIN)/python scripts/run_platform.py

test: $(STAMP)
	bash scripts/ensure_rabbitmq.sh
	bash scripts/ensure_deploy_tools.sh
	bash scripts/ensure_node_tools.sh
	bash scripts/ensure_console.sh --browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean-data:
	rm -rf .data
