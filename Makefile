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
# pebble: Let's Encrypt's test ACME server, run on the controller by the certbot e2e test
# (orchestrator/lab/services_acme.py).
APT_PACKAGES := debootstrap systemd-container prometheus prometheus-alertmanager iproute2 \
	prometheus-blackbox-exporter openssl \
	openssh-client openssh-server sqlite3 pebble

.PHONY: demo test deps venv lock lint molecule clean-lab collection

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

# ansible-lint reads ansible/.ansible-lint (profile production) and calls ansible-config: the
# venv's bin goes first on PATH.
lint: venv
	$(VENV)/bin/ruff check orchestrator tests benchmarks
	$(VENV)/bin/mypy
	cd ansible && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-lint

# The roles' molecule scenarios (ansible/roles/*/molecule/default) against the lab (yours:
# SELFHEAL_LAB_* as in docs/lab.md): each injects its role's fault, converges, checks
# idempotence, verifies, rolls back and clears the fault. A lab already running is reused; else
# it is booted once for all of them (3 hosts) and taken down at the end. Every scenario runs even
# when one fails; the failed ones are named at the end. `make test` runs one of them in full and
# checks all without the lab (README.md, "Development").
MOLECULE_ROLES := $(patsubst ansible/roles/%/molecule/default/molecule.yml,%,\
	$(wildcard ansible/roles/*/molecule/default/molecule.yml))
LAB_RUNNING := $(VENV)/bin/selfheal lab status --json 2>/dev/null | $(VENV)/bin/python -c \
	'import json, sys; sys.exit(not any(h["running"] for h in json.load(sys.stdin)["hosts"]))'

molecule: deps venv
	@if $(LAB_RUNNING); then booted=; else $(VENV)/bin/selfheal lab up --hosts 3 || exit 1; booted=1; fi; \
	failed=; for role in $(MOLECULE_ROLES); do \
		echo "== molecule test: $$role ($$(date +%T), load $$(cut -d' ' -f1-3 /proc/loadavg))"; \
		start=$$SECONDS; \
		(cd ansible/roles/$$role && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" molecule test) \
			&& result=passed || { result=FAILED; failed="$$failed $$role"; }; \
		echo "== $$role: $$result in $$((SECONDS - start)) s (load $$(cut -d' ' -f1-3 /proc/loadavg))"; \
	done; \
	if [ -n "$$booted" ]; then $(VENV)/bin/selfheal lab down; fi; \
	if [ -n "$$failed" ]; then echo "molecule failed:$$failed"; exit 1; fi

clean-lab: venv
	$(VENV)/bin/selfheal lab down

# The roles as an Ansible collection (selfheal.remediation) for teams' own playbooks:
# dist/selfheal-remediation-<version>.tar.gz. Offline; no Galaxy server is contacted.
COLLECTION_BUILD ?= build/collection
COLLECTION_OUT ?= dist
collection: venv
	rm -rf $(COLLECTION_BUILD) && mkdir -p $(COLLECTION_BUILD) $(COLLECTION_OUT)
	cp deploy/ansible-collection/galaxy.yml deploy/ansible-collection/README.md $(COLLECTION_BUILD)/
	cp -r ansible/roles $(COLLECTION_BUILD)/roles
	# a collection's roles find no modules in their own library/: they go to plugins/modules,
	# where the role's short name resolves (its own collection is searched first)
	mkdir -p $(COLLECTION_BUILD)/plugins/modules
	cp ansible/roles/*/library/*.py $(COLLECTION_BUILD)/plugins/modules/
	$(VENV)/bin/ansible-galaxy collection build $(COLLECTION_BUILD) --output-path $(COLLECTION_OUT) --force
