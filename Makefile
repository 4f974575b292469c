# Two commands for a fresh machine (Debian 12, as root): `make demo` and `make test`.
# Both install what is missing first and are idempotent; the lab image is cached in .cache/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
# Pinned, hashed dependency sets (see docs/supply-chain.md): what a controller installs, that plus
# the LLM extra (litellm), and both plus the test tools. `make lock` regenerates them from
# pyproject.toml.
LOCK := requirements.lock
LLM_LOCK := requirements-llm.lock
DEV_LOCK := requirements-dev.lock
UV ?= $(VENV)/bin/uv
UV_COMPILE := $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform linux --custom-compile-command "make lock" $(LOCK_FLAGS)
# setuptools builds our own editable install; it is locked too and used without build isolation,
# so nothing unhashed is fetched while installing.
BUILD_REQUIRES := $(PYTHON) -c 'import tomllib; \
	print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
APT_PACKAGES := debootstrap systemd-container prometheus prometheus-alertmanager iproute2 \
	prometheus-blackbox-exporter openssl \
	openssh-client openssh-server sqlite3

.PHONY: demo test deps venv lock lint clean-lab

demo: deps venv
	$(VENV)/bin/selfheal demo

test: deps venv
	$(VENV)/bin/python -m pytest

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(DEV_LOCK)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --require-hashes -r $(DEV_LOCK)
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve after changing dependencies in pyproject.toml (needs the venv for uv); keeps existing
# pins unless LOCK_FLAGS=--upgrade (or --upgrade-package NAME). Review the diff; `make venv` then
# installs it. tests/unit/test_supply_chain.py checks pyproject.toml and the locks agree.
lock: venv
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - -o $(LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --extra llm -o $(LLM_LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --extra dev --extra llm -o $(DEV_LOCK)

lint: venv
	$(VENV)/bin/ruff check orchestrator tests benchmarks
	$(VENV)/bin/mypy

clean-lab: venv
	$(VENV)/bin/selfheal lab down
