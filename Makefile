VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: sysdeps up test fuzz lint bench torture clean demo-envelope demo-global demo-drill console-shots demo-byok \
	drill-netns up-processes demo-keystore demo-xks up-etcd bench-etcd drill-netns-etcd

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/trent bench $(BENCH_ARGS)

# System packages the real components come from (SoftHSM2, etcd, Chromium, ...): deploy/debian-packages.txt.
sysdeps:
	@deploy/install-debian-packages

# make up ARGS="--regions us-east-1,eu-west-1 --seed keys.toml": any `trent up` flags.
up: $(STAMP) sysdeps
	$(VENV)/bin/trent up $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check trent tests examples
	$(VENV)/bin/mypy

test: lint sysdeps
	$(PY) -m pytest

# The crash harness at length: SIGKILL during mixed writes, restart, check (tests/crash_harness.py).
TORTURE_ROUNDS ?= 30
torture: $(STAMP)
	$(PY) -m tests.crash_harness --rounds $(TORTURE_ROUNDS) $(TORTURE_ARGS)

# The fuzzer of `make test` (40 examples per operation, about 20 s), ten times longer (about 95 s).
FUZZ_EXAMPLES ?= 400

fuzz: $(STAMP)
	TRENT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/e2e/test_fuzz.py -s

demo-envelope: $(STAMP)
	$(PY) examples/envelope_encryption.py

demo-global: $(STAMP)
	$(PY) examples/global_encryption.py

demo-drill: $(STAMP)
	$(PY) examples/dr_drill.py

# The README's pictures of the web console, taken by its Chromium test (docs/console/*.png).
console-shots: $(STAMP) sysdeps
	TRENT_CONSOLE_SCREENSHOTS=docs/console $(PY) -m pytest -p no:cacheprovider tests/e2e/test_console.py -q

demo-byok: $(STAMP)
	$(PY) examples/bring_your_own_key.py

# Three regions as three processes under one supervisor (real SIGKILL: trent fault crash|restart REGION).
up-processes: $(STAMP) sysdeps
	$(VENV)/bin/trent up --processes

# Every region kept in etcd (a local one-member etcd under .trent/etcd unless etcd_endpoints is configured).
up-etcd: $(STAMP) sysdeps
	$(VENV)/bin/trent up --store etcd

# etcd-backed regions in the benchmark, and a node's start over 100k keys in etcd (about 3 minutes in all).
bench-etcd: $(BENCH_STAMP) sysdeps
	$(VENV)/bin/trent bench --only etcd,etcd_scale --scale 100000 $(BENCH_ARGS)

# A region on etcd across network namespaces: 3 etcd members, 2 nodes, a node and a member SIGKILLed (root).
drill-netns-etcd: $(STAMP) sysdeps
	$(PY) -m trent.cluster.netns_etcd --out drill-netns-etcd

# The full DR drill across network namespaces (root): timeline, result and lag plot in $(DRILL_OUT).
DRILL_OUT ?= drill-netns
drill-netns: $(BENCH_STAMP) sysdeps
	$(PY) -m trent.cluster.netns_drill --out $(DRILL_OUT)

# A custom key store on the default HSM cluster (SoftHSM2, from deploy/debian-packages.txt): the HSM pulled down and back.
demo-keystore: $(STAMP) sysdeps
	$(PY) examples/keystore_demo.py

# An external key store on `trent xks-proxy` over HTTPS: the proxy slowed, failing, garbled, rejecting, down, back.
demo-xks: $(STAMP) sysdeps
	$(PY) examples/xks_demo.py

clean:
	rm -rf $(VENV) .trent
