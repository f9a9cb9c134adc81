# Two commands set everything up on a fresh machine (Python 3.11+ and make):
#   make lab    create .venv, install what a student needs, start JupyterLab on notebooks/
#   make test   create .venv, install that plus the test tools, run every test
# Versions come from constraints.txt (what CI tested). The packages are installed with uv (a
# fast installer, itself installed into .venv by pip); if uv cannot be installed, or with
# `make lab INSTALLER=pip`, with pip.
# Instructors: `make lab-instructor` opens the instructor edition (solutions, model answers).
PYTHON ?= python3
INSTALLER ?= uv
VENV   := .venv
BIN    := $(VENV)/bin
CONSTRAINTS := constraints.txt
PYTEST_ARGS ?=
comma := ,
# Cluster mode also needs the Kubernetes client: `LABKIT_MODE=cluster make lab`.
LAB_EXTRAS := lab$(if $(filter cluster,$(LABKIT_MODE)),$(comma)cluster)

.PHONY: lab lab-instructor test install install-lab lint validate lock clean help

help:
	@echo "make lab   - install what a student needs and start JupyterLab (local mode)"
	@echo "make test  - install the test tools too and run the whole suite (pytest + nbval)"
	@echo "make lock  - re-pin constraints.txt after changing dependencies in pyproject.toml"
	@echo "make lab-instructor - JupyterLab on the instructor edition (notebooks/instructor)"

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "labkit needs Python 3.11 or newer; found " + sys.version.split()[0]'
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ]; then \
		echo "==> installing uv (a fast package installer) into $(VENV)"; \
		$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on uv \
		|| echo "uv is not available here: installing with pip (slower)"; fi
	@touch $@

# $(1): the extras. uv shows its progress; pip prints each package as it goes.
define install_extras
	@echo "==> installing labkit[$(1)] with the versions in $(CONSTRAINTS) (first time: about a minute with uv)"
	@if [ "$(INSTALLER)" = uv ] && [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install --python $(BIN)/python -c $(CONSTRAINTS) -e '.[$(1)]'; \
	else \
		$(BIN)/python -m pip install --disable-pip-version-check -c $(CONSTRAINTS) -e '.[$(1)]'; \
	fi
endef

$(VENV)/.installed-$(subst $(comma),-,$(LAB_EXTRAS)): pyproject.toml $(CONSTRAINTS) | $(VENV)/.created
	$(call install_extras,$(LAB_EXTRAS))
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) | $(VENV)/.created
	$(call install_extras,lab$(comma)cluster$(comma)dev)
	@touch $@

install-lab: $(VENV)/.installed-$(subst $(comma),-,$(LAB_EXTRAS))

install: $(VENV)/.installed-test

JUPYTER_ROOT_FLAG = $$([ "$$(id -u)" = 0 ] && echo --allow-root)
# Students see the student edition; the instructor folder is hidden from their file browser.
HIDE_INSTRUCTOR = --ContentsManager.hide_globs="['__pycache__','*.pyc','*.pyo','.DS_Store','*~','instructor']"

lab: install-lab
	@echo "==> JupyterLab: open 00-setup.ipynb, Run All, then go on in order (01, 02, ...)"
	LABKIT_MODE=$${LABKIT_MODE:-local} $(BIN)/jupyter lab --notebook-dir=notebooks \
		$(HIDE_INSTRUCTOR) $(JUPYTER_ROOT_FLAG)

lab-instructor: install-lab
	LABKIT_MODE=$${LABKIT_MODE:-local} $(BIN)/jupyter lab --notebook-dir=notebooks/instructor \
		$(JUPYTER_ROOT_FLAG)

lint: install
	$(BIN)/ruff check ecommerce labkit tests
	$(BIN)/lint-imports --no-cache
	$(BIN)/labkit notebooks check

validate: install
	$(BIN)/labkit validate

# pytest exits 5 when it collected no test at all: that must fail, never pass silently.
# LABKIT_GATEWAY_PORT=0: a lab the tests or notebooks start takes any free port, never 8080.
test: install lint validate
	@set +e; LABKIT_GATEWAY_PORT=0 $(BIN)/python -m pytest tests $$(ls notebooks/*.ipynb >/dev/null 2>&1 && echo "notebooks --nbval-lax") $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; exit 1; fi; exit $$rc

# One universal file (Linux, macOS, Windows; Python 3.11+), for `pip install -c` and uv alike.
lock: $(VENV)/.created
	@[ -x $(BIN)/uv ] || $(BIN)/python -m pip install uv
	{ echo "# Versions CI tested (make test installs with them; make lab too): pip install -c constraints.txt"; \
	  echo "# Regenerate after changing dependencies in pyproject.toml: make lock (uv pip compile --universal)."; \
	  echo "# Universal: one file for Linux, macOS and Windows, Python 3.11+ (environment markers)."; \
	  $(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 --no-header --quiet; \
	} > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .labkit .pytest_cache .ruff_cache
