# Two commands set everything up on a fresh machine (Python 3.11+ and make):
#   make lab    create .venv, install, start JupyterLab on notebooks/ (local mode, no cluster)
#   make test   create .venv, install, run every test (ruff, manifest validation, pytest, nbval)
# Instructors: `make lab-instructor` opens the instructor edition (solutions, model answers).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: lab lab-instructor test install lint validate clean help

help:
	@echo "make lab   - start JupyterLab with the workbook (local mode)"
	@echo "make test  - run the whole test suite (pytest + nbval)"
	@echo "make lab-instructor - JupyterLab on the instructor edition (notebooks/instructor)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "labkit needs Python 3.11 or newer; found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lab,dev]'
	@touch $(STAMP)

install: $(STAMP)

JUPYTER_ROOT_FLAG = $$([ "$$(id -u)" = 0 ] && echo --allow-root)
# Students see the student edition; the instructor folder is hidden from their file browser.
HIDE_INSTRUCTOR = --ContentsManager.hide_globs="['__pycache__','*.pyc','*.pyo','.DS_Store','*~','instructor']"

lab: install
	LABKIT_MODE=$${LABKIT_MODE:-local} $(BIN)/jupyter lab --notebook-dir=notebooks \
		$(HIDE_INSTRUCTOR) $(JUPYTER_ROOT_FLAG)

lab-instructor: install
	LABKIT_MODE=$${LABKIT_MODE:-local} $(BIN)/jupyter lab --notebook-dir=notebooks/instructor \
		$(JUPYTER_ROOT_FLAG)

lint: install
	$(BIN)/ruff check ecommerce labkit tests
	$(BIN)/lint-imports --no-cache
	$(BIN)/labkit notebooks check

validate: install
	$(BIN)/labkit validate

# pytest exits 5 when it collected no test at all: that must fail, never pass silently.
test: install lint validate
	@set +e; $(BIN)/python -m pytest tests $$(ls notebooks/*.ipynb >/dev/null 2>&1 && echo "notebooks --nbval-lax") $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .labkit .pytest_cache .ruff_cache
