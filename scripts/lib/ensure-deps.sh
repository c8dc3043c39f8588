# Sourced by scripts/test and scripts/demo: makes sure the server packages,
# the status page test's headless browser and the Python tools the checks
# use are there, installing what is missing when running as root.

# With the argument `browser` (scripts/test), also the browser and ZooKeeper.
ensure_server_packages() {
    [ "${1:-}" = browser ] && ensure_zookeeper
    local missing=()
    if [ -z "${DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        missing+=(postgresql)
    fi
    if [ -z "${CLICKHOUSE_URL:-}" ] && ! command -v clickhouse-server >/dev/null 2>&1 \
        && [ ! -x /usr/sbin/clickhouse-server ]; then
        missing+=(clickhouse-server)
    fi
    # The status page's browser test (tests/it/status.rs) drives Debian's
    # headless Chromium through chromedriver.
    if [ "${1:-}" = browser ] && [ ! -x /usr/bin/chromium ]; then
        missing+=(chromium)
    fi
    if [ "${1:-}" = browser ] && [ ! -x /usr/bin/chromedriver ]; then
        missing+=(chromium-driver)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
        return 1
    fi
    echo "installing ${missing[*]}"
    apt-get update -qq
    # The packages' own services are not wanted: the tests start their own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The replicated ClickHouse tests (tests/it/cluster.rs) run Debian's
# ZooKeeper (and Java, which it depends on). Without it, and not root, those
# tests are skipped with a message; nothing else needs it.
ensure_zookeeper() {
    [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "zookeeper is not installed: the replicated ClickHouse tests will be skipped (apt-get install zookeeper)" >&2
        return 0
    fi
    echo "installing zookeeper"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zookeeper >/dev/null \
        || echo "cannot install zookeeper: the replicated ClickHouse tests will be skipped" >&2
}

# Sets PYTHON to an interpreter that has the packages in
# scripts/requirements.txt, creating target/python-venv if need be.
ensure_python_tools() {
    if python3 -c 'import chdb, standardwebhooks' >/dev/null 2>&1; then
        PYTHON=python3
        return 0
    fi
    local venv=target/python-venv
    # A venv whose pip does not run (python3-venv was missing when it was
    # made) is made again.
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$venv"
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            if [ "$(id -u)" -eq 0 ]; then
                apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
                python3 -m venv "$venv"
            else
                echo "python3 -m venv failed; install python3-venv" >&2
                return 1
            fi
        fi
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
    PYTHON="$venv/bin/python"
}
