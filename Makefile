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
	$(BIN)/mypy
	$(BIN)/labkit notebooks check

validate: install
	$(BIN)/labkit validate

# pytest exits 5 when it collected no test at all: that must fail, never pass silently.
# LABKIT_GATEWAY_PORT=0: a lab the tests or notebooks start takes any free port, never 8080.
# Two lanes run side by side (the machine has two cores; each lane is mostly one process at a
# time), each in a temporary data directory of its own (never .labkit/: 06-cleanup resets the lab):
#   - the tests (pytest tests/);
#   - the notebooks with nbval, three times in a row:
#     1. the student edition, all but 06-cleanup (its reset would leave run 2 nothing to re-run on);
#     2. the whole instructor edition again on that same data: every notebook re-runs on what
#        earlier runs left (stock sold, balances spent, sagas, events), and every exercise and
#        challenge check is ✅; the seconds per notebook are printed;
#     3. the whole instructor edition on PostgreSQL + Redis (LABKIT_PG_URL / LABKIT_REDIS_URL, a
#        fresh schema and key prefix), when the servers answer; LABKIT_REQUIRE_SERVERS=1 (CI)
#        makes their absence a failure.
#   The notebooks lane's output is printed when both lanes are done.
NB_FIRST = $$(ls notebooks/[0-9][0-9]-*.ipynb 2>/dev/null | grep -v -- -cleanup)
NB_AGAIN = notebooks/instructor
NB_PG = notebooks/instructor
test: install lint validate
	@set +e; export LABKIT_GATEWAY_PORT=0; nb=$$(mktemp -d); tag=nbval_$$$$; start=$$(date +%s); \
	( rc=0; first="$(NB_FIRST)"; \
	  if [ -n "$$first" ]; then \
		echo "==> the student edition (all but 06-cleanup)"; \
		LABKIT_DATA_DIR=$$nb/data $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax $$first; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no notebook"; rc=1; fi; \
	  fi; \
	  if [ $$rc -eq 0 ]; then \
		echo "==> the instructor edition, on the same data ($$nb/data)"; \
		LABKIT_DATA_DIR=$$nb/data $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax \
			--junitxml=$$nb/again.xml $(NB_AGAIN); rc=$$?; \
		echo "==> seconds per notebook (instructor edition):"; $(BIN)/python -m tests.nbval_times $$nb/again.xml; \
	  fi; \
	  if [ $$rc -eq 0 ]; then \
		urls=$$($(BIN)/python -m tests.servers); found=$$?; \
		if [ $$found -eq 0 ]; then \
			echo "==> the instructor edition on PostgreSQL + Redis (schema and prefix $$tag)"; \
			LABKIT_DATA_DIR=$$nb/pg LABKIT_PG_URL=$${urls%% *} LABKIT_REDIS_URL=$${urls##* } \
			LABKIT_PG_SCHEMA=$$tag LABKIT_REDIS_PREFIX=$$tag \
			$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax $(NB_PG); rc=$$?; \
			$(BIN)/python -m tests.servers --drop $$tag $$tag; \
		elif [ $$found -ne 3 ]; then rc=1; fi; \
	  fi; \
	  LABKIT_DATA_DIR=$$nb/data $(BIN)/labkit down >/dev/null 2>&1; \
	  LABKIT_DATA_DIR=$$nb/pg $(BIN)/labkit down >/dev/null 2>&1; \
	  echo "==> the notebooks: $$(( $$(date +%s) - start )) s, exit code $$rc"; exit $$rc \
	) > $$nb/notebooks.log 2>&1 & lane=$$!; \
	echo "==> the tests (the notebooks run beside them; their output follows the tests')"; \
	LABKIT_DATA_DIR=$$nb/tests $(BIN)/python -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; rc=1; fi; \
	echo "==> the tests: $$(( $$(date +%s) - start )) s, exit code $$rc"; \
	wait $$lane; nbrc=$$?; \
	echo "==> the notebooks' lane:"; cat $$nb/notebooks.log; \
	if [ $$rc -eq 0 ]; then rc=$$nbrc; fi; \
	LABKIT_DATA_DIR=$$nb/tests $(BIN)/labkit down >/dev/null 2>&1; \
	echo "==> make test: $$(( $$(date +%s) - start )) s of tests, exit code $$rc"; \
	rm -rf $$nb; exit $$rc

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
