# Two set-up commands (see README): `make demo` and `make test`.
# Both create or reuse the project-local virtual env .venv and install flanet into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow venv clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision first, at the versions this machine serves from local disk
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || \
		$(BIN)/python -m pip install --quiet "torch<=2.14.1" "torchvision<=0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/flanet demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(ARGS)

clean-venv:
	rm -rf $(VENV)
