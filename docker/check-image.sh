#!/usr/bin/env bash
# Builds pingap's container image around a natively built binary (docker/Dockerfile, target
# `packed`) and runs it the way the README's "Deploy" says, checking that:
#   * the image runs as a non-root user, with root CAs, and its placeholder configuration checks;
#   * the HEALTHCHECK (`pingap health`) turns healthy;
#   * a configuration mounted from a volume is used (PINGAP_CONF), the proxy and the dashboard
#     answer, PINGAP_ADMIN_ADDR and PINGAP_ADMIN_PASSWORD take effect, pingap's state (the
#     history) is written to the volume, SIGHUP applies a changed configuration, and a listener
#     change, which would need a graceful upgrade, is rejected instead of ending the container;
#   * `docker stop` drains: a request in flight completes, pingap exits 0 and logs the drain;
#   * docker/pingap.service works under systemd (booted in a container): a Type=notify start,
#     reloads applied and refused, the dedicated user and its capability, ProtectSystem=strict
#     with /etc/pingap writable, a drained stop.
# It also validates docker/compose.yaml (docker-compose config) and docker/prometheus.yml
# (promtool), and runs the compose stack with stand-ins for its third-party images, which
# cannot be pulled here: the stack's pingap turns healthy, proxies to its backends, serves its
# dashboard, Prometheus scrapes it, and the etcd profile's pingap serves from etcd.
#
#   docker/check-image.sh [BINARY]     (default target/release/pingap, from the repository root)
#
# BINARY is a path inside the repository that .dockerignore keeps in the build context. No
# registry is reachable here, so the runtime base is made locally (debootstrap, then docker
# import) unless RUNTIME_IMAGE names one that exists, and so is that base with systemd for the
# unit, and the compose stand-ins (apt-get, from Debian's mirror); the images are kept for the
# next run. Without a docker daemon answering, the
# script starts dockerd as .ci/run's machines run it (host networking only) and stops it at the
# end. Needs docker, debootstrap, docker-compose, promtool, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/pingap}
base=${RUNTIME_IMAGE:-local/debian:bookworm-slim}
systemd_base=local/debian-systemd:bookworm
standins=local/compose-standins:bookworm
project=pingapcheck$$
compose_up=""
image=pingap:check
name=pingap-check-$$
volume=pingap-check-$$
password=check-image-password
work=$(mktemp -d)
dockerd_pid=""
backend_pid=""

say() { printf '  %s\n' "$*"; }
fail() {
  echo "check-image: FAILED: $*" >&2
  if docker container inspect "$name-systemd" >/dev/null 2>&1; then
    docker exec "$name-systemd" journalctl -u pingap --no-pager 2>&1 | tail -30 >&2 || true
  fi
  if docker container inspect "$name" >/dev/null 2>&1; then
    echo "--- container logs ---" >&2
    docker logs "$name" 2>&1 | tail -40 >&2
  fi
  exit 1
}

cleanup() {
  if [ -n "$compose_up" ]; then compose down -v >/dev/null 2>&1 || true; fi
  docker rm -f "$name" "$name-systemd" >/dev/null 2>&1 || true
  docker volume rm "$volume" >/dev/null 2>&1 || true
  docker image rm "$image" >/dev/null 2>&1 || true
  if [ -n "$backend_pid" ]; then kill "$backend_pid" 2>/dev/null || true; fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Polls `$@` every 0.1s until it succeeds or $deadline seconds pass.
until_ok() {
  local deadline=$1; shift
  local end=$((SECONDS + deadline))
  until "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then return 1; fi
    sleep 0.1
  done
}

[ -x "$binary" ] || fail "no binary at $binary (cargo build --release --locked)"

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (--iptables=false --bridge=none)"
  dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  until_ok 60 docker info >/dev/null 2>&1 || { cat "$work/dockerd.log"; fail "dockerd did not start"; }
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  [ "$base" = local/debian:bookworm-slim ] || fail "no image $base"
  say "making $base: debootstrap --variant=minbase bookworm, docker import"
  rootfs="$work/rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" \
    http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  # What debian:bookworm-slim leaves out too: package lists and caches, documentation, locales.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
fi

say "building $image (--target packed, $binary, base $base)"
docker build -f docker/Dockerfile --target packed \
  --build-arg RUNTIME_IMAGE="$base" --build-arg PINGAP_BINARY="$binary" \
  -t "$image" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "docker build"; }
grep -i "sending build context" "$work/build.log" | sed 's/^/  /' || true

say "image settings"
inspect() { docker image inspect -f "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = "pingap:pingap" ] || fail "user: $(inspect '{{.Config.User}}')"
[ "$(inspect '{{json .Config.Healthcheck.Test}}')" = '["CMD","pingap","health"]' ] \
  || fail "healthcheck: $(inspect '{{json .Config.Healthcheck}}')"
[ "$(inspect '{{.Config.StopSignal}}')" = "SIGTERM" ] || fail "stop signal"
inspect '{{json .Config.Volumes}}' | grep -q '"/etc/pingap"' || fail "no volume /etc/pingap"
docker run --rm --entrypoint sh "$image" -c \
  'test "$(id -u)" = 10001 && test -s /etc/ssl/certs/ca-certificates.crt' \
  || fail "not uid 10001, or no root CAs"
docker run --rm "$image" -t >"$work/default.txt" 2>&1 || { cat "$work/default.txt"; fail "the placeholder configuration"; }
grep -q "configuration OK: /etc/pingap/pingap.toml" "$work/default.txt" || fail "$(cat "$work/default.txt")"

# Host networking (the only kind here), so ports are chosen free on loopback.
read -r proxy_port admin_port backend_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')

cat >"$work/backend.py" <<'EOF'
import http.server, pathlib, sys, time
marker = pathlib.Path(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            marker.touch()
            time.sleep(2)
        body = b"backend ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
python3 "$work/backend.py" "$backend_port" "$work/slow-started" &
backend_pid=$!

config() {
  cat <<EOF
[basic]
graceful_shutdown_timeout = "20s"

[upstreams.backend]
addrs = ["127.0.0.1:$backend_port"]

[locations.all]
upstream = "backend"
response_headers_set = ["X-Check: $1"]

[servers.main]
addr = "127.0.0.1:$proxy_port"
locations = ["all"]
health_path = "/healthz"
EOF
}

say "configuration in volume $volume, as the image's user"
docker volume create "$volume" >/dev/null
config one | docker run --rm -i -v "$volume:/etc/pingap" --entrypoint sh "$image" \
  -c 'cat > /etc/pingap/check.toml'

say "running $name: proxy on $proxy_port, admin API on $admin_port"
docker run -d --name "$name" --network host -v "$volume:/etc/pingap" \
  -e PINGAP_CONF=/etc/pingap/check.toml \
  -e PINGAP_ADMIN_ADDR="127.0.0.1:$admin_port" \
  -e PINGAP_ADMIN_PASSWORD="$password" \
  --health-interval 1s "$image" >/dev/null

health() { docker inspect -f '{{.State.Health.Status}}' "$name"; }
healthy() { test "$(health)" = healthy; }
until_ok 60 healthy || fail "not healthy: $(health); $(docker inspect -f '{{json .State.Health.Log}}' "$name")"
say "healthy"

proxy=http://127.0.0.1:$proxy_port
curl -sf "$proxy/" | grep -q "backend ok" || fail "the proxy does not answer from the mounted configuration's backend"
curl -sf "$proxy/healthz" >/dev/null || fail "no health path"
admin=http://127.0.0.1:$admin_port
curl -sf "$admin/" | grep -q '<div id="root">' || fail "no dashboard on PINGAP_ADMIN_ADDR"
curl -sf -o /dev/null -H 'content-type: application/json' \
  -d "{\"user\":\"admin\",\"password\":\"$password\"}" "$admin/api/login" \
  || fail "cannot sign in with PINGAP_ADMIN_PASSWORD"
say "proxy, dashboard and sign-in answer"

pid=$(docker inspect -f '{{.State.Pid}}' "$name")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uids" = "10001 10001 10001 10001" ] || fail "pingap runs with uids $uids"
say "pingap (pid $pid on the host) runs as uid 10001"

docker exec "$name" test -d /etc/pingap/check.toml.history \
  || fail "no history beside the configuration in the volume"
config two | docker exec -i "$name" sh -c 'cat > /etc/pingap/check.toml'
docker kill -s HUP "$name" >/dev/null
header() { curl -sf -D - -o /dev/null "$proxy/" | tr -d '\r' | grep -qi "^x-check: $1$"; }
until_ok 30 header two || fail "SIGHUP did not apply the changed configuration"
say "history in the volume; SIGHUP applied the changed configuration"

# A listener change needs a graceful upgrade, which would end the container (pingap is its pid
# 1): it is rejected, and pingap goes on serving.
config two | sed "s/127.0.0.1:$proxy_port/127.0.0.1:$backend_port/" \
  | docker exec -i "$name" sh -c 'cat > /etc/pingap/check.toml'
docker kill -s HUP "$name" >/dev/null
rejected() { docker logs "$name" 2>&1 | grep -q "restart the container to apply it"; }
until_ok 30 rejected || fail "the listener change was not rejected"
[ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "the container ended"
header two || fail "pingap stopped serving after the rejected listener change"
config two | docker exec -i "$name" sh -c 'cat > /etc/pingap/check.toml'
say "a listener change is rejected (restart the container), the container goes on serving"

curl -sf -o "$work/slow.txt" "$proxy/slow" &
slow=$!
until_ok 30 test -e "$work/slow-started" || fail "the slow request did not reach the backend"
docker stop -t 30 "$name" >/dev/null
wait "$slow" || fail "the request in flight failed during docker stop"
grep -q "backend ok" "$work/slow.txt" || fail "the request in flight got: $(cat "$work/slow.txt")"
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "exit code $code after docker stop"
docker logs "$name" >"$work/pingap.log" 2>&1
grep -q "shutting down gracefully" "$work/pingap.log" || fail "no graceful shutdown in the log"
grep -q "shut down: every request finished" "$work/pingap.log" || fail "no drain in the log"
say "docker stop: the request in flight completed, exit code 0, drained"

# The systemd unit under a real systemd (252, Debian's), booted in a container: Type=notify
# start, the status line, reloads applied and refused, the hardening (user, capability, a
# read-only system but for /etc/pingap), and a drained stop.
if ! docker image inspect "$systemd_base" >/dev/null 2>&1; then
  # procps: /bin/kill, which the unit's ExecReload runs (every Debian system has it; minbase not).
  say "making $systemd_base: $base with systemd"
  printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends systemd systemd-sysv procps curl && rm -rf /var/lib/apt/lists/*\n' "$base" \
    | docker build --network host -t "$systemd_base" - >"$work/systemd-build.log" 2>&1 \
    || { cat "$work/systemd-build.log"; fail "building $systemd_base"; }
fi
say "booting systemd in $name-systemd"
docker run -d --name "$name-systemd" --cap-add SYS_ADMIN --network host --tmpfs /run \
  --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$systemd_base" /lib/systemd/systemd >/dev/null
in_systemd() { docker exec "$name-systemd" "$@"; }
booted() { in_systemd systemctl is-system-running 2>/dev/null | grep -Eq '^(running|degraded)$'; }
until_ok 60 booted || fail "systemd did not boot: $(in_systemd systemctl is-system-running 2>&1)"
docker cp "$binary" "$name-systemd:/usr/local/bin/pingap"
docker cp docker/pingap.service "$name-systemd:/etc/systemd/system/pingap.service"
unit_config() {
  printf '[plugins.hello]\ntype = "mock"\nbody = "%s"\n[locations.hello]\nplugins = ["hello"]\n' "$1"
  printf '[servers.main]\naddr = "127.0.0.1:%s"\nlocations = ["hello"]\n' "$proxy_port"
}
# The install steps of the unit's header.
in_systemd sh -c 'useradd --system --home-dir /var/lib/pingap --shell /usr/sbin/nologin pingap &&
  install -d -o pingap -g pingap -m 0750 /etc/pingap && systemctl daemon-reload'
unit_config first | docker exec -i "$name-systemd" sh -c \
  'cat > /etc/pingap/pingap.toml && chown pingap:pingap /etc/pingap/pingap.toml'
# Returns once pingap said READY=1.
in_systemd systemctl start pingap || fail "systemctl start: $(in_systemd journalctl -u pingap --no-pager | tail -20)"
status_text() { in_systemd systemctl show -p StatusText --value pingap; }
[ "$(status_text)" = "serving configuration generation 1" ] || fail "status: $(status_text)"
curl -sf "$proxy/" | grep -qx first || fail "the service does not serve"
main_pid=$(in_systemd systemctl show -p MainPID --value pingap)
[ "$(in_systemd stat -c %U "/proc/$main_pid")" = pingap ] || fail "the service does not run as pingap"
in_systemd grep -q '^CapEff:[[:space:]]*0000000000000400$' "/proc/$main_pid/status" \
  || fail "the service's capabilities: $(in_systemd grep Cap "/proc/$main_pid/status")"
in_systemd test -d /etc/pingap/pingap.toml.history || fail "no history in /etc/pingap (ReadWritePaths)"
unit_config second | docker exec -i "$name-systemd" sh -c 'cat > /etc/pingap/pingap.toml'
in_systemd systemctl reload pingap || fail "systemctl reload"
until_ok 30 sh -c "curl -sf '$proxy/' | grep -qx second" || fail "the reload was not applied"
[ "$(status_text)" = "serving configuration generation 2" ] || fail "status after the reload: $(status_text)"
echo 'broken =' | docker exec -i "$name-systemd" sh -c 'cat >> /etc/pingap/pingap.toml'
if in_systemd systemctl reload pingap 2>/dev/null; then fail "a broken configuration reloaded"; fi
[ "$(in_systemd systemctl is-active pingap)" = active ] || fail "a refused reload stopped the service"
curl -sf "$proxy/" | grep -qx second || fail "a refused reload changed what is served"
in_systemd systemctl stop pingap
[ "$(in_systemd systemctl show -p Result --value pingap)" = success ] \
  || fail "stop: $(in_systemd systemctl show -p Result,ExecMainStatus pingap)"
in_systemd journalctl -u pingap --no-pager | grep -q "shut down: every request finished" \
  || fail "the stop did not drain"
docker rm -f "$name-systemd" >/dev/null
say "systemd: notify start, status, reload, refused reload, user pingap with CAP_NET_BIND_SERVICE, history under ProtectSystem=strict, drained stop"

say "compose and Prometheus files"
PINGAP_ADMIN_PASSWORD=x docker-compose -f docker/compose.yaml --profile etcd config -q \
  || fail "docker-compose config"
promtool check config docker/prometheus.yml >/dev/null || fail "promtool check config"

# The compose stack, run with stand-ins for the images no registry gives here: this image's
# pingap answering for the whoami backends, and Debian's prometheus and etcd in place of
# theirs (Grafana is left out). docker/compose.yaml is used as it is; an override file changes
# only the images.
if ! docker image inspect "$standins" >/dev/null 2>&1; then
  say "making $standins: $base with Debian's prometheus and etcd"
  printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends prometheus etcd-server etcd-client && rm -rf /var/lib/apt/lists/*\n' "$base" \
    | docker build --network host -t "$standins" - >"$work/standins-build.log" 2>&1 \
    || { cat "$work/standins-build.log"; fail "building $standins"; }
fi
printf '[servers.main]\naddr = "0.0.0.0:80"\nlocations = ["whoami"]\n[locations.whoami]\nplugins = ["whoami"]\n[plugins.whoami]\ntype = "mock"\nbody = "whoami stand-in"\n' \
  >"$work/whoami.toml"
chmod 0644 "$work/whoami.toml"
cat >"$work/standins.yaml" <<YAML
services:
  pingap: {image: $image}
  pingap-config: {image: $image}
  pingap-etcd-config: {image: $image}
  pingap-etcd: {image: $image}
  whoami1: &whoami
    image: $image
    environment: {PINGAP_CONF: /standin/whoami.toml}
    volumes: ["$work/whoami.toml:/standin/whoami.toml:ro"]
  whoami2: *whoami
  whoami3: *whoami
  prometheus: {image: $standins, entrypoint: [/usr/bin/prometheus]}
  etcd: {image: $standins}
YAML
compose() {
  PINGAP_ADMIN_PASSWORD="$password" docker-compose -f docker/compose.yaml -f "$work/standins.yaml" \
    -p "$project" --profile etcd "$@"
}
say "compose up (project $project): pingap, three backends, prometheus; etcd and a second pingap"
compose_up=1
compose up -d --no-build pingap prometheus pingap-etcd >"$work/compose.log" 2>&1 \
  || { cat "$work/compose.log"; fail "docker-compose up"; }
stack_pingap=$(compose ps -q pingap)
stack_healthy() { test "$(docker inspect -f '{{.State.Health.Status}}' "$stack_pingap")" = healthy; }
until_ok 90 stack_healthy || { compose logs pingap | tail -30; fail "the stack's pingap is not healthy"; }
curl -sf -D "$work/stack.headers" http://127.0.0.1:8080/ | grep -q "whoami stand-in" \
  || fail "the stack's pingap does not proxy to the backends"
grep -qi '^x-request-id:' "$work/stack.headers" || fail "no X-Request-Id from the stack's request_id plugin"
curl -sf http://127.0.0.1:9180/ | grep -q '<div id="root">' || fail "no dashboard on 127.0.0.1:9180"
curl -sf -o /dev/null -H 'content-type: application/json' \
  -d "{\"user\":\"admin\",\"password\":\"$password\"}" http://127.0.0.1:9180/api/login \
  || fail "cannot sign in to the stack's dashboard"
# Prometheus scrapes pingap over the stack's network and sees its three backends up.
backends_up() {
  curl -sf -G --data-urlencode 'query=sum(pingap_backend_up{instance="pingap:9100"})' \
    http://127.0.0.1:9090/api/v1/query \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and r[0]["value"][1] == "3" else 1)'
}
until_ok 60 backends_up || fail "Prometheus does not see pingap's three backends up"
etcd_serves() { curl -sf http://127.0.0.1:8081/ | grep -q "whoami stand-in"; }
until_ok 90 etcd_serves || { compose logs pingap-etcd-config pingap-etcd | tail -30; fail "the etcd profile's pingap does not serve"; }
compose down -v >/dev/null 2>&1 || fail "docker-compose down"
compose_up=""
say "compose: healthy, proxies with request ids, dashboard, Prometheus scrapes it, etcd profile serves"

echo "check-image: ok"
