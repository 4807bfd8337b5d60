# lrstudy: `make study` and `make test` work on a fresh machine (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: study test ui lab bench data venv system-test clean-store

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

# Fashion-MNIST: $$LRSTUDY_DATA_DIR, the Keras cache or Debian's dataset-fashion-mnist;
# installs the Debian package when no copy is found and we are root.
data: $(STAMP)
	@$(PY) -m lrstudy.data ensure 2>/dev/null || { \
	  if [ "$(IS_ROOT)" = yes ]; then \
	    echo "installing Debian's dataset-fashion-mnist"; \
	    (apt-get update -qq && $(APT) dataset-fashion-mnist) >/dev/null; \
	    $(PY) -m lrstudy.data ensure; \
	  else \
	    $(PY) -m lrstudy.data ensure || { echo "as root: apt-get install dataset-fashion-mnist (or set LRSTUDY_DATA_DIR)"; exit 2; }; \
	  fi; }

# What the end-to-end tests need from Debian: Chromium (browser test), PostgreSQL (server test).
system-test:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$(IS_ROOT)" = yes ]; then \
	    echo "installing$$missing"; (apt-get update -qq && $(APT) $$missing) >/dev/null; \
	  else echo "not root: install$$missing yourself (sudo apt-get install$$missing)"; fi; \
	fi

study: data
	$(PY) -m lrstudy run --study seeds --report

test: data system-test
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations 15

ui: $(STAMP)
	$(PY) -m lrstudy ui

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks

bench: data
	$(PY) bench/bench.py
