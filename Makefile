# Quick start: `make demo` and `make test`. Both install what is missing first.
# Debian 12 is assumed; apt packages are installed when a binary is missing,
# Python packages go into ./.venv (Debian's system Python refuses global pip).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := mariadb-server mariadb-backup etcd-server etcd-client zstd haproxy
# One binary per apt package: when all are present the apt step is skipped.
NEEDED_BINARIES := mariadbd mariabackup mbstream etcd etcdctl zstd haproxy
PYTEST_ARGS ?=
# `make chaos`: the randomized fault drill (tests/harness/drill.py). SEED empty = a random one,
# printed first; replay a run with the same SEED (and KINDS, BACKEND, RECLONE). MAX_LOAD=N waits
# before each fault until the machine's load average is below N (a shared machine).
SEED    ?=
ROUNDS  ?= 10
KINDS   ?=
BACKEND ?= etcd
RECLONE ?=
MAX_LOAD ?=

.PHONY: all deps apt venv test demo bench chaos clean

all: test

deps: apt venv

apt:
	@missing=""; for b in $(NEEDED_BINARIES); do \
	    command -v $$b >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing apt packages (missing:$$missing)"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

test: deps
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)

demo: deps
	$(PY) -m tests.harness.demo

bench: deps
	$(PY) -m bench

chaos: deps
	@seed="$(SEED)"; [ -n "$$seed" ] || seed=$$(od -An -N2 -tu2 /dev/urandom | tr -d ' '); \
	echo "chaos drill: seed $$seed, $(ROUNDS) rounds on $(BACKEND) (replay: make chaos SEED=$$seed ROUNDS=$(ROUNDS))"; \
	CHAOS_SEED=$$seed CHAOS_ROUNDS=$(ROUNDS) CHAOS_KINDS="$(KINDS)" CHAOS_BACKEND=$(BACKEND) \
	CHAOS_AUTO_RECLONE="$(RECLONE)" CHAOS_MAX_LOAD="$(MAX_LOAD)" CHAOS_REPORT_DIR=.chaos $(PY) -m pytest tests/test_chaos_drill.py -k test_chaos_drill_from_seed \
	    -s -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .demo .bench .chaos build *.egg-info
