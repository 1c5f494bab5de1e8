# Everything a fresh Debian 12 machine (root, package registries only) needs, in one place.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BUILDER := $(VENV)/bin/builder
APT_PACKAGES := busybox-static docker-registry umoci skopeo oci-image-tool runc crun jq zstd tar podman openssl uidmap libseccomp2 slirp4netns debootstrap fuse-overlayfs gcc libc6-dev
DEMO_ROOT ?= $(or $(BUILDER_ROOT),/var/lib/builder)
PYTEST_ARGS ?=

.PHONY: setup apt venv bytecode cgroups test fuzz lint bench demo base-image clean

setup: apt venv

# Installs only what is missing, so a second `make` costs nothing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

# Bytecode for our own modules: start-up time is part of every cached build, and an
# environment with PYTHONDONTWRITEBYTECODE would otherwise compile them on every run.
bytecode: venv
	@$(PY) -m compileall -q builder

# crun refuses hybrid cgroups until a v1 hugetlb hierarchy is mounted.
cgroups:
	@if [ -d /sys/fs/cgroup ] && ! mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then \
	  mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true; \
	fi

# The parser fuzz run (10,000+ inputs, ~3 min of one core) in a run of its own, beside the
# whole suite rather than before it: the suite keeps about one of CI's two cores busy (it
# waits on the kernel, the disk and subprocesses), so the fuzz fits in the other one. Its
# output follows the suite's; either failing fails the target.
test: setup cgroups
	@fuzzlog=$$(mktemp); \
	$(PY) -m pytest -m fuzz -q -p no:cacheprovider tests/recipe/test_fuzz.py >"$$fuzzlog" 2>&1 & \
	fuzz=$$!; \
	$(PY) -m pytest -m "not fuzz" -q $(PYTEST_ARGS); suite=$$?; \
	wait $$fuzz; fuzzed=$$?; \
	echo "--- the parser fuzz run (beside the suite) ---"; cat "$$fuzzlog"; rm -f "$$fuzzlog"; \
	[ $$suite -eq 0 ] && [ $$fuzzed -eq 0 ]

fuzz: setup
	$(PY) -m pytest -m fuzz -q tests/recipe/test_fuzz.py

lint: setup
	$(VENV)/bin/ruff check builder tests bench scripts
	$(VENV)/bin/ruff format --check builder tests bench scripts
	$(VENV)/bin/mypy

bench: setup cgroups bytecode
	$(PY) bench/run.py

# The demo: a busybox base image from the host's busybox-static, then recipes/hello.
base-image: setup
	@if ! $(BUILDER) --root $(DEMO_ROOT) inspect busybox:latest >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d) && $(PY) scripts/busybox_rootfs.py $$tmp/rootfs && \
	  $(BUILDER) --root $(DEMO_ROOT) import $$tmp/rootfs busybox:latest && rm -rf $$tmp; \
	fi

demo: base-image bytecode
	$(BUILDER) --root $(DEMO_ROOT) build -t hello:latest recipes/hello
	$(BUILDER) --root $(DEMO_ROOT) run --rm hello:latest

clean:
	rm -rf $(VENV) build dist *.egg-info
