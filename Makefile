# piagent: `make run` serves on 127.0.0.1:8000, `make test` runs lint, types and every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format check-config bench fake-ollama fake-openai clean install uninstall

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

run: $(VENV)/.run
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: lint check-config
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
