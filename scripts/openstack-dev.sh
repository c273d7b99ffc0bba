#!/usr/bin/env bash
# A real OpenStack API (Keystone, Glance, Placement, Nova with the fake compute driver, Neutron)
# on 127.0.0.1 only, from Debian 12's packages, for hubfleet's OpenStack tests and for trying
# the provider by hand. No VM ever boots: servers become ACTIVE as database rows.
#
#   scripts/openstack-dev.sh start    install what is missing, start everything (idempotent)
#   scripts/openstack-dev.sh stop     stop every process this script started (by process id)
#   scripts/openstack-dev.sh status   exit 0 when every service runs
#   scripts/openstack-dev.sh env      print the variables to use it: eval "$(... env)"
#
# Everything lives in $HUBFLEET_OPENSTACK_DIR (default /tmp/hubfleet-openstack): run/ is wiped
# on each fresh start, clouds.yaml (mode 0600) names the clouds `hubfleet-dev` (a member of the
# project hubfleet-test) and `hubfleet-dev-admin`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
TPL=$HERE/openstack
ROOT=$(dirname "$HERE")
DIR=${HUBFLEET_OPENSTACK_DIR:-/tmp/hubfleet-openstack}
RUN=$DIR/run
PY=/usr/bin/python3  # Debian's python: the service libraries are its packages, not the venv's
PORT_BASE=${HUBFLEET_OPENSTACK_PORT_BASE:-25000}
PORT_KEYSTONE=$((PORT_BASE + 0))
PORT_GLANCE=$((PORT_BASE + 1))
PORT_PLACEMENT=$((PORT_BASE + 2))
PORT_NOVA=$((PORT_BASE + 3))
PORT_NEUTRON=$((PORT_BASE + 4))
PORT_RABBIT=$((PORT_BASE + 5))
PORT_RABBIT_DIST=$((PORT_BASE + 6))
PORT_EPMD=$((PORT_BASE + 7))
SERVICES=(mariadb rabbitmq keystone placement glance-api neutron-server nova-api nova-conductor nova-scheduler nova-compute)
PACKAGES=(python3-keystone python3-nova python3-glance python3-placement python3-neutron python3-openstacksdk
          python3-yaml rabbitmq-server mariadb-server uwsgi-core uwsgi-plugin-python3 python3-pymysql)
export DIR RUN PORT_KEYSTONE PORT_GLANCE PORT_PLACEMENT PORT_NOVA PORT_NEUTRON PORT_RABBIT

log() { printf '[openstack-dev] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_packages() {
  # Library packages only: the service packages would prompt (debconf) and start systemd units.
  ensure_debian_packages "${PACKAGES[@]}"
  # The api-paste.ini files live in the *-common packages, which we unpack instead of install.
  local pkg=$DIR/pkg
  if [ ! -f "$pkg/.done" ]; then
    log "fetching api-paste.ini files from nova-common, glance-common, neutron-common"
    rm -rf "$pkg" && mkdir -p "$pkg/debs" "$pkg/root"
    (cd "$pkg/debs" && apt-get download -qq nova-common glance-common neutron-common 2>/dev/null) \
      || { apt-get update -qq && (cd "$pkg/debs" && apt-get download -qq nova-common glance-common neutron-common); }
    for deb in "$pkg"/debs/*.deb; do dpkg -x "$deb" "$pkg/root"; done
    touch "$pkg/.done"
  fi
}

pid_alive() { local f=$RUN/pids/$1; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

all_running() {
  [ -f "$DIR/clouds.yaml" ] || return 1
  local s
  for s in "${SERVICES[@]}"; do pid_alive "$s" || return 1; done
}

# Start one service in its own session (so stop can end its whole process group) and keep its pid.
launch() {
  local name=$1; shift
  setsid "$@" >>"$RUN/log/$name.out" 2>&1 < /dev/null &
  echo $! > "$RUN/pids/$name"
}

wait_port() {  # name port seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    pid_alive "$1" || die "$1 exited while starting; see $RUN/log/$1.*"
    sleep 0.2
  done
  die "$1 did not open 127.0.0.1:$2 in $3 s; see $RUN/log/$1.*"
}

render() {  # template -> output
  sed -e "s|@RUN@|$RUN|g" -e "s|@DB@|$DB|g" -e "s|@SERVICE_PASSWORD@|$SERVICE_PASSWORD|g" \
      -e "s|@PORT_KEYSTONE@|$PORT_KEYSTONE|g" -e "s|@PORT_GLANCE@|$PORT_GLANCE|g" \
      -e "s|@PORT_NOVA@|$PORT_NOVA|g" -e "s|@PORT_NEUTRON@|$PORT_NEUTRON|g" \
      -e "s|@PORT_RABBIT@|$PORT_RABBIT|g" "$1" > "$2"
  chmod 600 "$2"
}

pyrun() {  # run an OpenStack command-line entry point with Debian's python; its chatter goes to run/log
  local target=$1; shift
  "$PY" -c "import sys; from $target import main; sys.argv[0] = '$target'; sys.exit(main())" "$@" \
    >>"$RUN/log/manage.log" 2>&1 || die "$target $* failed; see $RUN/log/manage.log"
}

write_clouds_yaml() {
  umask 077
  cat > "$DIR/clouds.yaml" <<YAML
# Written by scripts/openstack-dev.sh: the local development cloud on 127.0.0.1.
clouds:
  hubfleet-dev:
    auth:
      auth_url: http://127.0.0.1:$PORT_KEYSTONE/v3
      username: hubfleet
      password: $TEST_PASSWORD
      project_name: hubfleet-test
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
  hubfleet-dev-admin:
    auth:
      auth_url: http://127.0.0.1:$PORT_KEYSTONE/v3
      username: admin
      password: $ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
YAML
  umask 022
}

start() {
  ensure_packages
  if all_running; then log "already running ($DIR)"; return 0; fi
  stop_all quiet
  local t0=$SECONDS
  rm -rf "$RUN"
  mkdir -p "$RUN"/{pids,log,etc,lock,mysql,rabbit,keystone,glance/images,nova/instances,neutron}
  chmod 700 "$DIR" "$RUN"
  umask 077
  openssl rand -hex 16 > "$RUN/.db"; openssl rand -hex 16 > "$RUN/.service"
  openssl rand -hex 16 > "$RUN/.admin"; openssl rand -hex 16 > "$RUN/.test"
  umask 022
  DB_PASSWORD=$(cat "$RUN/.db"); SERVICE_PASSWORD=$(cat "$RUN/.service")
  ADMIN_PASSWORD=$(cat "$RUN/.admin"); TEST_PASSWORD=$(cat "$RUN/.test")
  export SERVICE_PASSWORD TEST_PASSWORD
  DB="mysql+pymysql://openstack:$DB_PASSWORD@localhost"
  local qs="?unix_socket=$RUN/mysql.sock"
  # The socket goes into each URL after the database name: render then append it.
  for conf in keystone placement glance-api nova neutron; do render "$TPL/$conf.conf.in" "$RUN/etc/$conf.conf"; done
  sed -i -E "s|^(connection = mysql\+pymysql://[^ ]+)$|\1$qs|" "$RUN"/etc/*.conf
  cp "$DIR/pkg/root/usr/share/nova-common/api-paste.ini" "$RUN/etc/nova-api-paste.ini"
  cp "$DIR/pkg/root/usr/share/glance-common/glance-api-paste.ini" "$RUN/etc/glance-api-paste.ini"
  cp "$DIR/pkg/root/usr/share/neutron-common/api-paste.ini" "$RUN/etc/neutron-api-paste.ini"

  log "starting MariaDB (unix socket only)"
  mariadb-install-db --no-defaults --user=root --datadir="$RUN/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$RUN/log/mariadb-install.log" 2>&1
  launch mariadb /usr/sbin/mariadbd --no-defaults --user=root --datadir="$RUN/mysql" --socket="$RUN/mysql.sock" \
    --skip-networking --pid-file="$RUN/mysql.pid" --log-error="$RUN/log/mariadb.log" \
    --innodb-buffer-pool-size=64M --max-connections=500 --skip-log-bin
  log "starting RabbitMQ on 127.0.0.1:$PORT_RABBIT"
  # Erlang's distribution, epmd and AMQP all bound to loopback; its cookie lives under run/.
  launch rabbitmq env HOME="$RUN/rabbit" RABBITMQ_NODENAME=hubfleet@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT_RABBIT" RABBITMQ_DIST_PORT="$PORT_RABBIT_DIST" \
    ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$PORT_EPMD" RABBITMQ_MNESIA_BASE="$RUN/rabbit/mnesia" \
    RABBITMQ_LOG_BASE="$RUN/log" RABBITMQ_CONFIG_FILE="$RUN/rabbit/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RUN/rabbit/enabled_plugins" RABBITMQ_ENABLED_PLUGINS="" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
  local i
  for ((i = 0; i < 150; i++)); do [ -S "$RUN/mysql.sock" ] && break; sleep 0.2; done
  [ -S "$RUN/mysql.sock" ] || die "MariaDB did not start; see $RUN/log/mariadb.log"
  {
    echo "CREATE USER 'openstack'@'localhost' IDENTIFIED BY '$DB_PASSWORD';"
    echo "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'localhost';"
    for db in keystone glance placement nova_api nova nova_cell0 neutron; do echo "CREATE DATABASE $db;"; done
  } | mariadb --no-defaults --socket="$RUN/mysql.sock" -uroot

  # The other services' schemas do not depend on Keystone: migrate them meanwhile, in parallel.
  log "migrating the Placement, Glance, Neutron and Nova databases in the background"
  local nconf=(--config-file "$RUN/etc/neutron.conf") vconf=(--config-file "$RUN/etc/nova.conf") migrations=()
  pyrun placement.cmd.manage --config-file "$RUN/etc/placement.conf" db sync & migrations+=($!)
  pyrun glance.cmd.manage --config-file "$RUN/etc/glance-api.conf" db_sync & migrations+=($!)
  pyrun neutron.db.migration.cli "${nconf[@]}" upgrade heads & migrations+=($!)
  (
    pyrun nova.cmd.manage "${vconf[@]}" api_db sync
    pyrun nova.cmd.manage "${vconf[@]}" cell_v2 map_cell0 --database_connection "$DB/nova_cell0$qs"
    pyrun nova.cmd.manage "${vconf[@]}" cell_v2 create_cell --name cell1
    pyrun nova.cmd.manage "${vconf[@]}" db sync
  ) & migrations+=($!)

  log "starting Keystone on 127.0.0.1:$PORT_KEYSTONE"
  local kconf=(--config-file "$RUN/etc/keystone.conf")
  pyrun keystone.cmd.manage "${kconf[@]}" db_sync
  pyrun keystone.cmd.manage "${kconf[@]}" fernet_setup --keystone-user root --keystone-group root
  pyrun keystone.cmd.manage "${kconf[@]}" credential_setup --keystone-user root --keystone-group root
  OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD pyrun keystone.cmd.manage "${kconf[@]}" bootstrap \
    --bootstrap-admin-url "http://127.0.0.1:$PORT_KEYSTONE/v3" \
    --bootstrap-public-url "http://127.0.0.1:$PORT_KEYSTONE/v3" \
    --bootstrap-internal-url "http://127.0.0.1:$PORT_KEYSTONE/v3" --bootstrap-region-id RegionOne
  # uwsgi closes each connection: clients fail on reused keep-alive connections otherwise.
  launch keystone uwsgi-core --plugin python3 --http-socket "127.0.0.1:$PORT_KEYSTONE" \
    --wsgi-file /usr/bin/keystone-wsgi-public --master --processes 1 --threads 4 --die-on-term \
    --add-header "Connection: close" --env "OS_KEYSTONE_CONFIG_FILES=$RUN/etc/keystone.conf" \
    --logto "$RUN/log/keystone-uwsgi.log"
  write_clouds_yaml
  export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml
  wait_port keystone "$PORT_KEYSTONE" 30

  log "registering services and the test project"
  "$PY" "$TPL/bootstrap.py" identity

  local m
  for m in "${migrations[@]}"; do wait "$m" || die "a database migration failed; see $RUN/log/manage.log"; done
  log "starting Placement, Glance, Neutron, Nova"
  mkdir -p "$RUN/etc/placement" && cp "$RUN/etc/placement.conf" "$RUN/etc/placement/placement.conf"
  launch placement uwsgi-core --plugin python3 --http-socket "127.0.0.1:$PORT_PLACEMENT" \
    --wsgi-file /usr/bin/placement-api --master --processes 1 --threads 4 --die-on-term \
    --add-header "Connection: close" --env "OS_PLACEMENT_CONFIG_DIR=$RUN/etc/placement" \
    --logto "$RUN/log/placement-uwsgi.log"

  launch glance-api "$PY" -c "import sys; from glance.cmd.api import main; sys.exit(main())" \
    --config-file "$RUN/etc/glance-api.conf"

  launch neutron-server env PYTHONPATH="$TPL/hubfleet_ml2" "$PY" -c \
    "import sys; from neutron.cmd.eventlet.server import main; sys.exit(main())" "${nconf[@]}"

  for svc in api conductor scheduler compute; do
    launch "nova-$svc" "$PY" -c "import sys; from nova.cmd.$svc import main; sys.exit(main())" "${vconf[@]}" \
      --log-file "$RUN/log/nova-$svc.log"
  done
  wait_port placement "$PORT_PLACEMENT" 30
  wait_port glance-api "$PORT_GLANCE" 30
  wait_port neutron-server "$PORT_NEUTRON" 60
  wait_port nova-api "$PORT_NOVA" 60

  log "waiting for nova-compute's first heartbeat"
  "$PY" "$TPL/bootstrap.py" wait-compute 2>>"$RUN/log/manage.log"
  pyrun nova.cmd.manage "${vconf[@]}" cell_v2 discover_hosts
  log "creating flavors, the external network and the image"
  head -c 1048576 /dev/zero > "$RUN/dummy.img"
  "$PY" "$TPL/bootstrap.py" resources "$ROOT/hubfleet/data/flavors.yaml" "$RUN/dummy.img"
  log "ready in $((SECONDS - t0)) s: export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml OS_CLOUD=hubfleet-dev"
}

stop_all() {
  local s pid any=0
  [ -d "$RUN/pids" ] || { [ "${1:-}" = quiet ] || log "nothing to stop"; return 0; }
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    s=${SERVICES[$i]}
    [ -f "$RUN/pids/$s" ] || continue
    pid=$(cat "$RUN/pids/$s")
    # Each service was started with setsid: its pid is its process group, children included.
    if kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; any=1; fi
  done
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for s in "${SERVICES[@]}"; do pid_alive "$s" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for s in "${SERVICES[@]}"; do
    if pid_alive "$s"; then pid=$(cat "$RUN/pids/$s"); kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  done
  # epmd is started by Erlang on first use, outside the rabbitmq process group: end it by its port's owner.
  pid=$(ss -Hltnp "sport = :$PORT_EPMD" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  rm -f "$RUN"/pids/*
  [ "${1:-}" = quiet ] || { [ "$any" = 1 ] && log "stopped" || log "nothing was running"; }
}

status() {
  local s rc=0
  for s in "${SERVICES[@]}"; do
    if pid_alive "$s"; then printf '%-16s running (pid %s)\n' "$s" "$(cat "$RUN/pids/$s")"
    else printf '%-16s stopped\n' "$s"; rc=1; fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  env) echo "export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml OS_CLOUD=hubfleet-dev" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
