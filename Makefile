# The two commands a newcomer needs: `make demo` and `make test`. Both set up everything they use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-ci demo-web demo-mcp demo-cluster test lint typecheck unit services bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ostiary demo

demo-web: $(STAMP)
	$(BIN)/python examples/web_microservices/run.py

demo-mcp: $(STAMP)
	$(BIN)/python examples/mcp_server/run.py

# three nodes in their own network namespaces behind HAProxy (needs root); Ctrl-C removes everything
demo-cluster: $(STAMP)
	@bash scripts/ensure-services.sh
	@bash scripts/ensure-haproxy.sh
	$(BIN)/python examples/cluster/run.py

demo-ci: $(STAMP)
	$(BIN)/python examples/ci_federation/run.py

services:
	@bash scripts/ensure-services.sh
	@bash scripts/ensure-chromium.sh
	@bash scripts/ensure-haproxy.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) services lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP) services
	@bash scripts/ensure-wrk.sh
	$(BIN)/python bench/token_bench.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
