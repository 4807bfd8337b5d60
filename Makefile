# lrstudy: `make study` and `make test` work on a fresh machine (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: study test ui lab bench data venv lock system-test

# The lock (requirements.txt: every package at an exact version, with its hashes), then the
# project itself without dependencies.
venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

# Regenerate the lock from pyproject.toml's ranges (all extras) after changing them: uv keeps
# every version the lock has unless a range excludes it; `make lock UPGRADE=--upgrade` moves
# all to the newest allowed. Then `make venv` and the tests.
define LOCK_HEADER
# The lock: every package of lrstudy's environment (pyproject.toml with all its extras: the
# runtime, `cluster`, `test`) at an exact version, with the sha256 of each of its files.
# `make venv` installs exactly this (pip --require-hashes), then lrstudy itself (--no-deps).
# Made by uv (`uv pip compile --generate-hashes`; regenerate with `make lock`), not pip-tools:
# uv resolves these 200-odd packages in seconds from the index's metadata and hashes, where
# pip-compile runs pip's resolver, downloading wheels (TensorFlow's is 250 MB) to read and
# hash them; uv is also the installer of tests/test_install.py's fresh environment.
# Why some versions are held back: the comments in pyproject.toml.
endef
export LOCK_HEADER
lock: $(STAMP)
	$(VENV)/bin/uv pip compile -q pyproject.toml --all-extras --generate-hashes --python $(PY) \
	  --custom-compile-command "make lock" --find-links /opt/wheels $(UPGRADE) -o requirements.txt
	@{ echo "$$LOCK_HEADER"; cat requirements.txt; } > requirements.txt.new
	@mv requirements.txt.new requirements.txt

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

# JupyterLab rooted at the project (notebooks/, runs/ and reports/ one click away), opening the
# start-here notebook (as root, Jupyter wants --allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir . $(if $(IS_ROOT),--allow-root) \
	  --LabApp.default_url=/lab/tree/notebooks/start_here.ipynb

bench: data
	$(PY) bench/bench.py
