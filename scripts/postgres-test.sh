#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, on 127.0.0.1 only, trust auth, in a temporary directory.
#
#   scripts/postgres-test.sh [start] [DIR]   start it (DIR: an empty or new directory; default: a new one
#                                            under /tmp); prints its URL, postgresql://voicebot@127.0.0.1:PORT/voicebot
#   scripts/postgres-test.sh stop [DIR]      stop it and remove DIR (default: the last one started)
#
# As root the server runs as the `postgres` user (PostgreSQL refuses root): DIR is handed to that user.
# Binaries: the newest /usr/lib/postgresql/*/bin (or PG_BIN). Install them with scripts/setup.sh.
set -euo pipefail

DB_USER=voicebot
DB_NAME=voicebot
LAST="${TMPDIR:-/tmp}/voicebot-pgtest.last"

die() { echo "postgres-test: $*" >&2; exit 1; }

find_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  die "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb): run scripts/setup.sh"
}

os_user() {  # the account the server runs as when we are root
  local user="${PGTEST_OS_USER:-postgres}"
  if ! id "$user" >/dev/null 2>&1; then
    user=voicebot-pg
    id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
  fi
  echo "$user"
}

as_server() {  # run a command as the server's account
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local bin dir port url tries=0
  bin=$(find_bin)
  dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/voicebot-pg.XXXXXX")}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/data" ] && die "$dir already holds a server; stop it first"
  RUN_AS=""
  if [ "$(id -u)" -eq 0 ]; then
    RUN_AS=$(os_user)
    chown "$RUN_AS" "$dir"
  fi
  chmod 700 "$dir"
  as_server "$bin/initdb" -D "$dir/data" -U "$DB_USER" --auth=trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  while :; do
    port=$(( 20000 + RANDOM % 40000 ))
    port_free "$port" || continue
    if as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || { cat "$dir/server.log" >&2; die "the server did not start"; }
  done
  for _ in $(seq 1 100); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DB_USER" && break
    sleep 0.1
  done
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME"
  url="postgresql://$DB_USER@127.0.0.1:$port/$DB_NAME"
  echo "$url" >"$dir/url"
  echo "$dir" >"$LAST"
  echo "$url"
}

stop() {
  local bin dir="${1:-}"
  [ -n "$dir" ] || dir=$(cat "$LAST" 2>/dev/null || true)
  [ -n "$dir" ] || die "no server to stop (give its directory)"
  [ -d "$dir" ] || { echo "postgres-test: $dir is gone already" >&2; return 0; }
  bin=$(find_bin)
  RUN_AS=""
  [ "$(id -u)" -ne 0 ] || RUN_AS=$(stat -c %U "$dir")
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null || true
  fi
  rm -rf "$dir"
  [ "$(cat "$LAST" 2>/dev/null || true)" != "$dir" ] || rm -f "$LAST"
}

case "${1:-start}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  -h|--help|help) sed -n '2,9p' "$0" ;;
  *) start "$1" ;;
esac
