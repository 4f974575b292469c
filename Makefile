# Two commands for a fresh machine (Debian 12, as root): `make demo` and `make test`.
# Both install what is missing first and are idempotent; the lab image is cached in .cache/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
APT_PACKAGES := debootstrap systemd-container prometheus prometheus-alertmanager iproute2 \
	openssh-client openssh-server sqlite3

.PHONY: demo test deps venv lint clean-lab

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

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check orchestrator tests benchmarks
	$(VENV)/bin/mypy

clean-lab: venv
	$(VENV)/bin/selfheal lab down
