# Two commands a new user needs: `make demo` and `make test`. Both run `make setup` first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup system demo test bench clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system.sh

# torch is pinned to the CPU build (requirements.txt); an unpinned torch pulls gigabytes of CUDA wheels.
# pip's own chatter goes to .venv/install.log; it is printed only when a step fails.
$(STAMP): requirements.txt pyproject.toml
	@echo "vj setup: creating $(VENV) with pinned packages (requirements.txt); log in $(VENV)/install.log"
	@$(PYTHON) -m venv $(VENV)
	@( $(VENV)/bin/python -m pip install -q --upgrade pip \
	  && $(VENV)/bin/python -m pip install -q -r requirements.txt \
	  && $(VENV)/bin/python -m pip install -q --no-deps -e . ) > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "vj setup: pip failed (full log: $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/vj demo

test: setup
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/vj bench

clean:
	rm -rf $(VENV) demo.mp4 .pytest_cache
