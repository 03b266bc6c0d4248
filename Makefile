# Two commands a new user needs: `make demo` and `make test`. Both run `make setup` first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup system demo test bench clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system.sh

# torch is pinned to the CPU build (requirements.txt); an unpinned torch pulls gigabytes of CUDA wheels.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/vj demo

test: setup
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/vj bench

clean:
	rm -rf $(VENV) demo.mp4 .pytest_cache
