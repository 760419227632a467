# Rampart template repository. Thin wrappers: the logic lives in tests/ and scripts/.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := $(shell sed -n 's/^ *"uv==\([^"]*\)",$$/\1/p' pyproject.toml)
DEMO_DIR ?= build/demo
PYTEST := $(VENV)/bin/python -m pytest
# uv must never fetch an interpreter at run time; it shares one package cache across every venv it makes.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help venv demo test test-fast lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

venv: $(VENV)/.installed release-tags ## create .venv/ with every dev tool pinned (uv, copier, cookiecutter, validators)

.PHONY: release-tags
release-tags: ## add the v* release tags a clone lacks, at the commits CHANGELOG.md names
	@$(PYTHON) scripts/release_tags.py

$(VENV)/.installed: pyproject.toml uv.lock
	@[ -x $(UV) ] || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

demo: venv ## render the default service into $(DEMO_DIR), install what it needs to run, serve it on 127.0.0.1:8000
	$(VENV)/bin/python scripts/demo.py --dest "$(DEMO_DIR)"

test: venv promtool container-bases ## the whole template test suite (every level of the ladder)
	$(PYTEST) -n 2 --dist loadgroup --durations=15 tests

test-fast: venv ## cheap levels only: questions, a sample of renders, static checks
	$(PYTEST) -m fast tests

.PHONY: lock test-latest
lock: venv ## regenerate the lockfiles generated projects ship (locks/); UPGRADE=1: newest allowed versions
	$(VENV)/bin/python scripts/lock.py $(if $(UPGRADE),--upgrade)

test-latest: venv ## the smoke level with every generated dependency at its newest allowed version
	RAMPART_LATEST_DEPENDENCIES=1 $(PYTEST) -n 2 --dist loadgroup -m smoke tests

lint: venv ## lint the template's own Python (the rendered code is linted by the tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: docs
docs: venv ## build the docs site into build/site (strict)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

clean: ## remove build output (keeps .venv/)
	rm -rf build

# promtool (checks the generated Prometheus rules and runs their unit tests) from Debian's pinned package,
# unpacked into build/tools/ without installing anything system-wide. Best effort: where apt cannot fetch
# it, the promtool tests skip with that reason and the structural checks of the rules still run.
PROMTOOL_PACKAGE := prometheus=2.42.0+ds-5+deb12u1
TOOLS_BIN := $(CURDIR)/build/tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
.PHONY: promtool

promtool: ## build/tools/bin/promtool from Debian's prometheus package (used by the monitoring tests)
	@[ -x $(TOOLS_BIN)/promtool ] || { \
		scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
		( cd "$$scratch" && apt-get download --quiet=2 "$(PROMTOOL_PACKAGE)" 2>/dev/null ) && \
		dpkg-deb -x "$$scratch"/prometheus_*.deb "$$scratch/root" && \
		install -D -m 0755 "$$scratch/root/usr/bin/promtool" $(TOOLS_BIN)/promtool && \
		echo "promtool: $$($(TOOLS_BIN)/promtool --version 2>&1 | head -1)"; \
	} || echo "promtool: apt-get download $(PROMTOOL_PACKAGE) failed; its checks will skip"

# HAProxy, the fleet level's load balancer (tests/test_fleet.py), from Debian's pinned package, installed
# with apt-get (sudo where not root; Debian's policy-rc.d keeps the packaged service from starting). Best
# effort: where it cannot be had, the fleet tests skip with that reason, or fail under CI=true.
HAPROXY_PACKAGE ?= haproxy=2.6.12-1+deb12u4
.PHONY: haproxy

haproxy: ## HAProxy from Debian's pinned package (the fleet level's load balancer)
	@command -v haproxy >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo) && \
		{ $$sudo apt-get install -y -qq --no-install-recommends "$(HAPROXY_PACKAGE)" >/dev/null 2>&1 || \
		  { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends "$(HAPROXY_PACKAGE)" >/dev/null; }; }; \
	} || echo "haproxy: apt-get install $(HAPROXY_PACKAGE) failed; the fleet tests will skip"
	@if command -v haproxy >/dev/null; then haproxy -v | sed -n 1p; fi

# checkov (IaC security scanner) gets its own venv: it pins packaging==23.2, which breaks pre-commit.
# Its pins live in scripts/checkov-requirements.txt (`uv pip compile` of scripts/checkov-requirements.in).
CHECKOV_VENV := build/checkov-venv
.PHONY: checkov

checkov: $(CHECKOV_VENV)/.installed ## build/checkov-venv/ with the pinned checkov (level 3's checkov test)

$(CHECKOV_VENV)/.installed: scripts/checkov-requirements.txt $(VENV)/.installed
	rm -rf $(CHECKOV_VENV)
	$(UV) venv --quiet --python $(VENV)/bin/python $(CHECKOV_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(CHECKOV_VENV)/bin/python --requirement scripts/checkov-requirements.txt
	@touch $@

# `make bench`: the performance benchmark (scripts/bench/run.py; BENCH_QUICK=1 for a fast, rougher run). It
# has its own venv so the bare app, the library-assembled app and the generated service share one set of
# pins (scripts/bench/requirements.txt, `uv pip compile` of scripts/bench/requirements.in). Its stdout is the
# markdown report alone; progress goes to stderr.
BENCH_VENV := build/bench/venv
.PHONY: bench

bench: $(BENCH_VENV)/.installed ## performance: hardening overhead, micro-costs, cold start, template timings
	@$(VENV)/bin/python scripts/bench/run.py --bench-python $(BENCH_VENV)/bin/python

.PHONY: bench-instructions
bench-instructions: $(BENCH_VENV)/.installed ## instructions per request, bare vs hardened (callgrind: repeatable; after make bench)
	@$(VENV)/bin/python scripts/bench/instructions.py --bench-python $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.installed: scripts/bench/requirements.txt | $(VENV)/.installed
	@echo "==> creating $(BENCH_VENV) from scripts/bench/requirements.txt" >&2
	@rm -rf $(BENCH_VENV)
	@$(UV) venv --quiet --python $(VENV)/bin/python $(BENCH_VENV) >&2
	@$(UV) pip install --quiet --compile-bytecode --python $(BENCH_VENV)/bin/python --requirement scripts/bench/requirements.txt >&2
	@touch $@

# Level 7 builds and runs the generated images with podman, daemonless, on base images made here from
# debootstrap and a local CPython (scripts/container_bases.py; kept in podman's store, rebuilt only when what
# made them changes). The packages are Debian bookworm's, pinned; elsewhere set CONTAINER_PACKAGES (e.g. to
# the bare names). Best effort, like promtool: where they cannot be had, level 7 skips with the reason.
CONTAINER_PACKAGES ?= podman=4.3.1+ds1-8+deb12u1+b3 runc=1.1.5+ds1-1+deb12u1 debootstrap=1.0.128+nmu2+deb12u2
export CONTAINERS_CONF ?= $(CURDIR)/tests/containers/containers.conf
.PHONY: container-tools container-bases

container-tools: ## install podman, runc and debootstrap with apt (as root, when missing)
	@if command -v podman >/dev/null && { command -v debootstrap || [ -x /usr/sbin/debootstrap ]; } >/dev/null; then \
		echo "container-tools: $$(podman --version), debootstrap present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update --quiet=2 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet=2 \
			$(CONTAINER_PACKAGES) >/dev/null; \
	else \
		echo "container-tools: podman or debootstrap missing and apt-get needs root: sudo make container-tools"; \
	fi

container-bases: venv container-tools ## the base images the generated Dockerfiles name, made locally (level 7)
	@$(VENV)/bin/python scripts/container_bases.py || echo "container-bases: not made; level 7 will skip"
