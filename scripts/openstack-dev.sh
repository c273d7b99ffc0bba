#!/usr/bin/env bash
# A real OpenStack (Keystone, Glance, Placement, Nova, Neutron, Cinder) on 127.0.0.1, from Debian
# 12's packages, whose servers really boot: hubfleet's compute driver runs each one as a stock
# Debian system in a container on this machine's Docker engine (systemd, sshd, cloud-init reading
# a NoCloud seed with the key pair and user data), plugged into Neutron's networks by the dev
# cloud's own agent (a bridge per network, a namespace per router, NAT for floating IPs), with
# Cinder volumes as loop devices. See scripts/openstack/hubfleet_devcloud/ and docs/openstack.md.
#
#   scripts/openstack-dev.sh start    install what is missing, start everything (idempotent)
#   scripts/openstack-dev.sh stop     stop every process this script started (by process id) and
#                                     remove every server, volume and network plumbing of the cloud
#   scripts/openstack-dev.sh status   exit 0 when every service runs
#   scripts/openstack-dev.sh env      print the variables to use it: eval "$(... env)"
#
# Everything lives in $HUBFLEET_OPENSTACK_DIR (default /tmp/hubfleet-openstack): run/ is wiped
# on each fresh start, clouds.yaml (mode 0600) names the clouds `hubfleet-dev` (a member of the
# project hubfleet-test) and `hubfleet-dev-admin`, site.yaml is a hubfleet site file for it.
# The external network is a documentation range that hides nothing this machine needs (or
# HUBFLEET_OPENSTACK_EXTERNAL_CIDR): this machine is its gateway, so floating IPs answer from here.
# One dev cloud per machine.
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
PORT_CINDER=$((PORT_BASE + 8))
IMAGE_NAME=debian-12
SERVICES=(mariadb rabbitmq keystone placement glance-api neutron-server l3-agent nova-api nova-conductor
          nova-scheduler nova-compute cinder-api cinder-scheduler cinder-volume)
PACKAGES=(python3-keystone python3-nova python3-glance python3-placement python3-neutron python3-cinder
          python3-openstacksdk python3-yaml rabbitmq-server mariadb-server uwsgi-core uwsgi-plugin-python3
          python3-pymysql iproute2 iptables util-linux)
# The dev cloud's own drivers and agent (Nova, Cinder, the L3 agent) and Neutron's ML2 driver.
DEVCLOUD_PATH=$TPL:$TPL/hubfleet_ml2
export DIR RUN PORT_KEYSTONE PORT_GLANCE PORT_PLACEMENT PORT_NOVA PORT_NEUTRON PORT_RABBIT PORT_CINDER

log() { printf "[openstack-dev %3ds] %s\n" "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_packages() {
  # Library packages only: the service packages would prompt (debconf) and start systemd units.
  ensure_debian_packages "${PACKAGES[@]}"
  # The api-paste.ini files live in the *-common packages, which we unpack instead of install.
  local pkg=$DIR/pkg commons=(nova-common glance-common neutron-common cinder-common)
  if [ ! -f "$pkg/.done-cinder" ]; then
    log "fetching api-paste.ini files from ${commons[*]}"
    rm -rf "$pkg" && mkdir -p "$pkg/debs" "$pkg/root"
    (cd "$pkg/debs" && apt-get download -qq "${commons[@]}" 2>/dev/null) \
      || { apt-get update -qq && (cd "$pkg/debs" && apt-get download -qq "${commons[@]}"); }
    for deb in "$pkg"/debs/*.deb; do dpkg -x "$deb" "$pkg/root"; done
    touch "$pkg/.done-cinder"
  fi
  command -v docker >/dev/null && docker info >/dev/null 2>&1 \
    || die "the servers run on this machine's Docker engine: run scripts/ensure-docker.sh first"
}

# The stock Debian 12 image the servers boot (hubfleet's images/stock recipe, built when missing),
# saved once per image id for Glance.
stock_image_archive() {
  local ref=${HUBFLEET_DEVCLOUD_IMAGE:-}
  if [ -z "$ref" ]; then
    [ -x "$ROOT/.venv/bin/python" ] || die "no .venv: run scripts/setup.sh first (it builds the stock image)"
    ref=$("$ROOT/.venv/bin/python" -c "import sys
from hubfleet.providers.docker.images import ensure_stock_image
print(ensure_stock_image(lambda m: print(m, file=sys.stderr)))") || die "building the stock image failed"
  fi
  local id; id=$(docker image inspect -f '{{.Id}}' "$ref") || die "no Docker image $ref"
  id=${id#sha256:}
  local archive=$DIR/images/stock-${id:0:12}.tar
  if [ ! -f "$archive" ]; then
    log "saving $ref for Glance"
    rm -rf "$DIR/images" && mkdir -p "$DIR/images"
    docker save -o "$archive.part" "$ref" && mv "$archive.part" "$archive"
  fi
  echo "$archive"
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
      -e "s|@PORT_RABBIT@|$PORT_RABBIT|g" -e "s|@PORT_CINDER@|$PORT_CINDER|g" "$1" > "$2"
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

start_mariadb() {
  launch mariadb /usr/sbin/mariadbd --no-defaults --user=root --datadir="$RUN/mysql" --socket="$RUN/mysql.sock" \
    --skip-networking --pid-file="$RUN/mysql.pid" --log-error="$RUN/log/mariadb.log" \
    --innodb-buffer-pool-size=64M --max-connections=500 --skip-log-bin
  local i
  for ((i = 0; i < 150; i++)); do [ -S "$RUN/mysql.sock" ] && return 0; pid_alive mariadb || break; sleep 0.2; done
  die "MariaDB did not start; see $RUN/log/mariadb.log"
}

stop_mariadb() {
  mariadb-admin --no-defaults --socket="$RUN/mysql.sock" -uroot shutdown
  local i
  for ((i = 0; i < 150; i++)); do pid_alive mariadb || return 0; sleep 0.2; done
  die "MariaDB did not stop; see $RUN/log/mariadb.log"
}

# What the migrated databases depend on: the services' package versions, their configuration
# templates, the socket path (in the cell mappings) and SCHEMA_RECIPE (bump it when the migration
# steps below change).
SCHEMA_RECIPE=1
schema_key() {
  { dpkg-query -W "${PACKAGES[@]}" mariadb-server 2>/dev/null; cat "$TPL"/*.conf.in; echo "$RUN $SCHEMA_RECIPE"; } \
    | sha256sum | cut -c1-16
}

write_site_yaml() {
  local gateway; gateway=$("$PY" -c "import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))" \
    "$EXTERNAL_CIDR")
  cat > "$DIR/site.yaml" <<YAML
# Written by scripts/openstack-dev.sh: a hubfleet site file for the local development cloud.
# HUBFLEET_SITE_CONFIG=$DIR/site.yaml OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml hubfleet create ...
cloud: hubfleet-dev
image: $IMAGE_NAME
ssh_user: debian
external_network: public
operator_cidr: $gateway/32   # this machine, on the external network
YAML
}

start() {
  ensure_packages
  if all_running; then log "already running ($DIR)"; print_paths; return 0; fi
  stop_all quiet
  local t0=$SECONDS
  local archive; archive=$(stock_image_archive)
  # The external network is routed to this machine: never over its mirrors, resolvers or other networks.
  EXTERNAL_CIDR=$(PYTHONPATH="$DEVCLOUD_PATH" "$PY" -m hubfleet_devcloud.l3agent --choose-external \
    "${HUBFLEET_OPENSTACK_EXTERNAL_CIDR:-}") || die "set HUBFLEET_OPENSTACK_EXTERNAL_CIDR to a free range"
  export EXTERNAL_CIDR
  log "external network: $EXTERNAL_CIDR (this machine is its gateway)"
  rm -rf "$RUN"
  mkdir -p "$RUN"/{pids,log,etc,lock,mysql,rabbit,keystone,glance/images,nova/instances,neutron,cinder/volumes}
  chmod 700 "$DIR" "$RUN"
  umask 077
  # The database's password lives as long as the cached databases it opens; the others, one run.
  [ -s "$DIR/.db" ] || openssl rand -hex 16 > "$DIR/.db"
  openssl rand -hex 16 > "$RUN/.service"
  openssl rand -hex 16 > "$RUN/.admin"; openssl rand -hex 16 > "$RUN/.test"
  umask 022
  DB_PASSWORD=$(cat "$DIR/.db"); SERVICE_PASSWORD=$(cat "$RUN/.service")
  ADMIN_PASSWORD=$(cat "$RUN/.admin"); TEST_PASSWORD=$(cat "$RUN/.test")
  export SERVICE_PASSWORD TEST_PASSWORD
  DB="mysql+pymysql://openstack:$DB_PASSWORD@localhost"
  local qs="?unix_socket=$RUN/mysql.sock"
  # The socket goes into each URL after the database name: render then append it.
  for conf in keystone placement glance-api nova neutron cinder; do render "$TPL/$conf.conf.in" "$RUN/etc/$conf.conf"; done
  sed -i -E "s|^(connection = mysql\+pymysql://[^ ]+)$|\1$qs|" "$RUN"/etc/*.conf
  cp "$DIR/pkg/root/usr/share/nova-common/api-paste.ini" "$RUN/etc/nova-api-paste.ini"
  cp "$DIR/pkg/root/usr/share/glance-common/glance-api-paste.ini" "$RUN/etc/glance-api-paste.ini"
  cp "$DIR/pkg/root/usr/share/neutron-common/api-paste.ini" "$RUN/etc/neutron-api-paste.ini"
  cp "$DIR/pkg/root/usr/share/cinder-common/api-paste.ini" "$RUN/etc/cinder-api-paste.ini"

  local nconf=(--config-file "$RUN/etc/neutron.conf") vconf=(--config-file "$RUN/etc/nova.conf")
  local cconf=(--config-file "$RUN/etc/cinder.conf") kconf=(--config-file "$RUN/etc/keystone.conf")
  # The migrated, still empty databases are cached by everything that shapes them: migrations
  # take minutes on a busy machine, copying their result a second.
  local key; key=$(schema_key)
  local cached=$DIR/cache/mysql-$key
  if [ -d "$cached" ]; then
    log "starting MariaDB (unix socket only) on the cached migrated databases"
    cp -a "$cached/." "$RUN/mysql/"
    start_mariadb
  else
    log "starting MariaDB (unix socket only)"
    mariadb-install-db --no-defaults --user=root --datadir="$RUN/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >"$RUN/log/mariadb-install.log" 2>&1
    start_mariadb
    {
      echo "CREATE USER 'openstack'@'localhost' IDENTIFIED BY '$DB_PASSWORD';"
      echo "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'localhost';"
      for db in keystone glance placement nova_api nova nova_cell0 neutron cinder; do echo "CREATE DATABASE $db;"; done
    } | mariadb --no-defaults --socket="$RUN/mysql.sock" -uroot
    log "migrating the Keystone, Placement, Glance, Neutron, Nova and Cinder databases (once per package version)"
    local migrations=() m
    pyrun keystone.cmd.manage "${kconf[@]}" db_sync & migrations+=($!)
    pyrun placement.cmd.manage --config-file "$RUN/etc/placement.conf" db sync & migrations+=($!)
    pyrun glance.cmd.manage --config-file "$RUN/etc/glance-api.conf" db_sync & migrations+=($!)
    pyrun neutron.db.migration.cli "${nconf[@]}" upgrade heads & migrations+=($!)
    pyrun cinder.cmd.manage "${cconf[@]}" db sync & migrations+=($!)
    (
      pyrun nova.cmd.manage "${vconf[@]}" api_db sync
      pyrun nova.cmd.manage "${vconf[@]}" cell_v2 map_cell0 --database_connection "$DB/nova_cell0$qs"
      pyrun nova.cmd.manage "${vconf[@]}" cell_v2 create_cell --name cell1
      pyrun nova.cmd.manage "${vconf[@]}" db sync
    ) & migrations+=($!)
    for m in "${migrations[@]}"; do wait "$m" || die "a database migration failed; see $RUN/log/manage.log"; done
    stop_mariadb
    rm -rf "$DIR/cache" && mkdir -p "$DIR/cache" && cp -a "$RUN/mysql" "$cached.part" && mv "$cached.part" "$cached"
    start_mariadb
  fi
  log "starting RabbitMQ on 127.0.0.1:$PORT_RABBIT"
  # Erlang's distribution, epmd and AMQP all bound to loopback; its cookie lives under run/.
  launch rabbitmq env HOME="$RUN/rabbit" RABBITMQ_NODENAME=hubfleet@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT_RABBIT" RABBITMQ_DIST_PORT="$PORT_RABBIT_DIST" \
    ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$PORT_EPMD" RABBITMQ_MNESIA_BASE="$RUN/rabbit/mnesia" \
    RABBITMQ_LOG_BASE="$RUN/log" RABBITMQ_CONFIG_FILE="$RUN/rabbit/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RUN/rabbit/enabled_plugins" RABBITMQ_ENABLED_PLUGINS="" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server

  log "starting Keystone on 127.0.0.1:$PORT_KEYSTONE"
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
  write_site_yaml
  export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml
  wait_port keystone "$PORT_KEYSTONE" 30

  log "registering services and the test project"
  "$PY" "$TPL/bootstrap.py" identity

  log "starting Placement, Glance, Neutron and its L3 agent, Nova, Cinder"
  mkdir -p "$RUN/etc/placement" && cp "$RUN/etc/placement.conf" "$RUN/etc/placement/placement.conf"
  launch placement uwsgi-core --plugin python3 --http-socket "127.0.0.1:$PORT_PLACEMENT" \
    --wsgi-file /usr/bin/placement-api --master --processes 1 --threads 4 --die-on-term \
    --add-header "Connection: close" --env "OS_PLACEMENT_CONFIG_DIR=$RUN/etc/placement" \
    --logto "$RUN/log/placement-uwsgi.log"

  launch glance-api "$PY" -c "import sys; from glance.cmd.api import main; sys.exit(main())" \
    --config-file "$RUN/etc/glance-api.conf"

  launch neutron-server env PYTHONPATH="$DEVCLOUD_PATH" "$PY" -c \
    "import sys; from neutron.cmd.eventlet.server import main; sys.exit(main())" "${nconf[@]}"

  for svc in api conductor scheduler; do
    launch "nova-$svc" "$PY" -c "import sys; from nova.cmd.$svc import main; sys.exit(main())" "${vconf[@]}" \
      --log-file "$RUN/log/nova-$svc.log"
  done
  launch nova-compute env PYTHONPATH="$DEVCLOUD_PATH" "$PY" -m hubfleet_devcloud.nova_compute "${vconf[@]}" \
    --log-file "$RUN/log/nova-compute.log"
  for svc in api scheduler volume; do
    launch "cinder-$svc" env PYTHONPATH="$DEVCLOUD_PATH" "$PY" -c \
      "import sys; from cinder.cmd.$svc import main; sys.exit(main())" "${cconf[@]}" \
      --log-file "$RUN/log/cinder-$svc.log"
  done
  wait_port placement "$PORT_PLACEMENT" 30
  wait_port glance-api "$PORT_GLANCE" 30
  wait_port neutron-server "$PORT_NEUTRON" 60
  launch l3-agent env PYTHONPATH="$DEVCLOUD_PATH" OS_CLIENT_CONFIG_FILE="$DIR/clouds.yaml" \
    "$PY" -m hubfleet_devcloud.l3agent
  wait_port nova-api "$PORT_NOVA" 60
  wait_port cinder-api "$PORT_CINDER" 60

  log "waiting for nova-compute's and cinder-volume's first heartbeats"
  "$PY" "$TPL/bootstrap.py" wait-compute 2>>"$RUN/log/manage.log"
  pyrun nova.cmd.manage "${vconf[@]}" cell_v2 discover_hosts
  "$PY" "$TPL/bootstrap.py" wait-volumes 2>>"$RUN/log/manage.log"
  log "creating flavors, the external network and the image $IMAGE_NAME"
  "$PY" "$TPL/bootstrap.py" resources "$ROOT/hubfleet/data/flavors.yaml" "$archive" "$IMAGE_NAME"
  log "ready in $((SECONDS - t0)) s"
  print_paths
}

print_paths() {
  log "clouds.yaml: $DIR/clouds.yaml (clouds hubfleet-dev, hubfleet-dev-admin)"
  log "site file:   $DIR/site.yaml"
  log "use it: eval \"\$($0 env)\""
}

# Servers, their disks, volumes' loop devices and network plumbing the dev cloud made (by its labels
# and names): after a stop, and before a fresh start when a previous run ended without one.
sweep() {
  local ids tags loop
  ids=$(docker ps -aq --filter label=hubfleet.devcloud.instance 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  ids=$(docker volume ls -q --filter label=hubfleet.devcloud.instance 2>/dev/null || true)
  [ -z "$ids" ] || docker volume rm -f $ids >/dev/null 2>&1 || true
  # By tag, never by id: a Glance copy of the stock image is the same image as hubfleet/stock.
  tags=$(docker images --format '{{.Repository}}:{{.Tag}}' hubfleet-devcloud/glance 2>/dev/null || true)
  [ -z "$tags" ] || docker rmi $tags >/dev/null 2>&1 || true
  for loop in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v d="$RUN/cinder/volumes/" 'index($2, d) == 1 {print $1}'); do
    losetup -d "$loop" 2>/dev/null || true
  done
  PYTHONPATH="$DEVCLOUD_PATH" "$PY" -m hubfleet_devcloud.l3agent --sweep >/dev/null 2>&1 || true
}

stop_all() {
  local s pid any=0
  [ -d "$RUN/pids" ] || { sweep; [ "${1:-}" = quiet ] || log "nothing to stop"; return 0; }
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
  sweep
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
  env) echo "export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml OS_CLOUD=hubfleet-dev HUBFLEET_SITE_CONFIG=$DIR/site.yaml" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
