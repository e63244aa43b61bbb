# hallgate — the two commands: `make run` and `make test`. Everything installs itself.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?=
PORT   ?= 8080

.PHONY: setup run test test-fast lint bench clean

setup:  ## create .venv and install everything (torch CPU, llama.cpp, the local model)
	@VENV=$(VENV) bash scripts/bootstrap.sh

run: setup  ## serve on http://127.0.0.1:8080/v1 with the embedded local model
	$(VENV)/bin/hallgate serve --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

test: setup  ## the whole test suite (fake upstream + the real embedded model)
	@bash scripts/install_test_tools.sh
	$(PY) -m pytest -q

test-fast: setup  ## tests that do not start the embedded model
	$(PY) -m pytest -q -m "not model"

lint: setup
	$(VENV)/bin/ruff check proxy detectors policies calibration tests bench

clean:
	rm -rf $(VENV) .venv-clients tests/clients/node/node_modules .pytest_cache .ruff_cache
