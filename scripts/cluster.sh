#!/usr/bin/env bash
# Start (up), stop (down) a *private* 3-node RabbitMQ cluster for the cluster fault tests, and kill,
# restart, freeze or thaw one node of it, never touching the shared broker of the machine.
# Usage: cluster.sh up|down|status|wait|kill N|start N|freeze N|thaw N|pid N|ctl N ARGS...
#   N is 1, 2 or 3; `ctl N` runs rabbitmqctl against node N; `wait` waits until all three run
#   as one cluster again (e.g. after a thawed node paused itself under pause_minority).
# Environment (all optional):
#   TDM_CLUSTER_DIR   (.work/cluster)   state, logs and config, one sub-directory per node
#   TDM_CLUSTER_NODE  (tdmc)            node names are ${TDM_CLUSTER_NODE}1..3@localhost
#   TDM_CLUSTER_PORTS (5700)            node N: AMQP BASE+N, STOMP BASE+10+N, distribution BASE+20+N
#   TDM_CLUSTER_WAIT  (120 seconds to wait for a node)
# Each node: its own RABBITMQ_NODENAME, ports, mnesia/log dirs, config and enabled-plugins file;
# one Erlang cookie for the three (they must share it to cluster). pause_minority: a node cut off
# from the other two pauses itself (closes its listeners) instead of diverging.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${TDM_CLUSTER_DIR:-$HERE/../.work/cluster}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PREFIX="${TDM_CLUSTER_NODE:-tdmc}"
BASE="${TDM_CLUSTER_PORTS:-5700}"
WAIT="${TDM_CLUSTER_WAIT:-120}"
RABBIT_BIN=/usr/lib/rabbitmq/bin

log() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_n() { case "${1:-}" in 1|2|3) ;; *) die "node number must be 1, 2 or 3, got '${1:-}'" ;; esac; }
node_name() { echo "${PREFIX}$1@localhost"; }
amqp_port() { echo $((BASE + $1)); }
stomp_port() { echo $((BASE + 10 + $1)); }
dist_port() { echo $((BASE + 20 + $1)); }

node_env() {
    local n="$1" d="$DIR/n$1"
    export HOME="$DIR" RABBITMQ_NODENAME="$(node_name "$n")" RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
        RABBITMQ_DIST_PORT="$(dist_port "$n")" RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_PID_FILE="$d/rabbit.pid" \
        RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
}

write_config() {
    local n="$1" d="$DIR/n$1"
    mkdir -p "$d/mnesia" "$d/log"
    : >"$d/rabbitmq-env.conf"
    [ -f "$DIR/.erlang.cookie" ] || { printf 'TDMCLUSTER%s' "$RANDOM$RANDOM" >"$DIR/.erlang.cookie"; chmod 400 "$DIR/.erlang.cookie"; }
    echo '[rabbitmq_stomp].' >"$d/enabled_plugins"
    {
        echo "listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")"
        echo "stomp.listeners.tcp.1 = 127.0.0.1:$(stomp_port "$n")"
        echo "loopback_users = none"
        echo "log.file.level = info"
        echo "cluster_partition_handling = pause_minority"
    } >"$d/rabbitmq.conf"
    # A short net tick: a frozen or cut-off node is seen as down in seconds, not a minute.
    echo '[{kernel, [{net_ticktime, 8}]}].' >"$d/advanced.config"
}

is_node() { [ -n "$2" ] && tr '\0' '\n' <"/proc/$2/environ" 2>/dev/null | grep -qxF "RABBITMQ_NODENAME=$(node_name "$1")"; }

node_pid() {
    local n="$1" pid=""
    [ -s "$DIR/n$n/rabbit.pid" ] && pid="$(cat "$DIR/n$n/rabbit.pid")"
    if is_node "$n" "$pid"; then echo "$pid"; return 0; fi
    pid="$(ss -ltnpH "sport = :$(dist_port "$n")" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
    if is_node "$n" "$pid"; then echo "$pid"; fi
}

ctl() { local n="$1"; shift; ( node_env "$n"; "$RABBIT_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@" ); }

start_node() {
    local n="$1"
    if port_open "$(amqp_port "$n")" && port_open "$(stomp_port "$n")"; then log "node $n already up"; return 0; fi
    write_config "$n"
    ( node_env "$n"; setsid "$RABBIT_BIN/rabbitmq-server" >"$DIR/n$n/log/console.log" 2>&1 </dev/null & )
}

wait_node() {
    local n="$1" deadline=$(( $(date +%s) + WAIT ))
    until port_open "$(amqp_port "$n")" && port_open "$(stomp_port "$n")"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$(node_name "$n") did not open its ports within ${WAIT}s; see $DIR/n$n/log/"
        sleep 0.5
    done
}

members() { ctl "${1:-1}" eval 'length(rabbit_nodes:all_running()).' 2>/dev/null | tr -d '[:space:]'; }

# wait: until each node sees all three running. A node that came back while the others still
# counted it as partitioned away (mnesia "inconsistent_database") stays cut off for good under
# pause_minority, which heals only a minority that paused: that node's app is restarted, as
# RabbitMQ's partition guide says to do by hand.
whole() {
    local deadline=$(( $(date +%s) + WAIT )) m
    for n in 1 2 3; do wait_node "$n"; done
    until [ "$(members 1)" = 3 ] && [ "$(members 2)" = 3 ] && [ "$(members 3)" = 3 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || die "the three nodes did not run as one cluster within ${WAIT}s"
        for n in 1 2 3; do
            m="$(members "$n")"
            if [ "$m" = 1 ] && [ "$(ctl "$n" eval 'rabbit_node_monitor:partitions().' 2>/dev/null | tr -d '[:space:]')" != "[]" ]; then
                log "node $n is cut off from the others (partitioned); restarting its app"
                ctl "$n" stop_app >/dev/null 2>&1 || true
                ctl "$n" start_app >/dev/null 2>&1 || true
                wait_node "$n"
            fi
        done
        sleep 0.5
    done
    log "whole: 3 nodes running"
}

up() {
    local fresh=0
    [ -d "$DIR/n2/mnesia/$(node_name 2)" ] || fresh=1
    for n in 1 2 3; do start_node "$n"; done
    for n in 1 2 3; do wait_node "$n"; done
    if [ "$fresh" = 1 ] || [ "$(members)" != 3 ]; then
        for n in 2 3; do
            ctl "$n" stop_app >/dev/null
            ctl "$n" join_cluster "$(node_name 1)" >/dev/null 2>&1 || true  # "already a member" on a re-run
            ctl "$n" start_app >/dev/null
        done
        for n in 2 3; do wait_node "$n"; done
    fi
    [ "$(members)" = 3 ] || die "the three nodes did not form one cluster; see $DIR/n*/log/"
    log "up: $(node_name 1) $(node_name 2) $(node_name 3) (AMQP $(amqp_port 1)-$(amqp_port 3), STOMP $(stomp_port 1)-$(stomp_port 3))"
}

stop_node() {
    local n="$1" pid
    pid="$(node_pid "$n" || true)"
    [ -n "$pid" ] || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DIR/n$n/rabbit.pid"
}

down() { for n in 3 2 1; do stop_node "$n"; done; log "down"; }

# kill N: SIGKILL node N (a crash); its ports are waited closed so the tests see it gone.
crash() {
    local n="$1" pid
    pid="$(node_pid "$n" || true)"
    [ -n "$pid" ] || die "node $n is not running"
    kill -KILL "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    rm -f "$DIR/n$n/rabbit.pid"
    for _ in $(seq 1 40); do port_open "$(amqp_port "$n")" || port_open "$(dist_port "$n")" || break; sleep 0.25; done
    log "node $n killed (pid $pid)"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    up) up ;;
    down) down ;;
    status) ctl 1 cluster_status ;;
    wait) whole ;;
    kill) check_n "${1:-}"; crash "$1" ;;
    start) check_n "${1:-}"; start_node "$1"; wait_node "$1"; log "node $1 up" ;;
    freeze) check_n "${1:-}"; pid="$(node_pid "$1")"; [ -n "$pid" ] || die "node $1 not running"; kill -STOP "$pid"; log "node $1 frozen" ;;
    thaw) check_n "${1:-}"; pid="$(node_pid "$1")"; [ -n "$pid" ] || die "node $1 not running"; kill -CONT "$pid"; log "node $1 thawed" ;;
    pid) check_n "${1:-}"; node_pid "$1" ;;
    ctl) check_n "${1:-}"; n="$1"; shift; ctl "$n" "$@" ;;
    *) die "usage: $0 up|down|status|wait|kill N|start N|freeze N|thaw N|pid N|ctl N ARGS..." ;;
esac
