#!/usr/bin/env bash
# Start (up), stop (down), freeze (stop-signal), thaw (cont), kill (SIGKILL) or restart a *private*
# RabbitMQ node for the fault tests, so they may kill or SIGSTOP it without touching the shared brokers
# of the machine.
# Usage: faultbroker.sh up|down|restart|freeze|thaw|kill|pid|ctl ARGS...   (ctl runs rabbitmqctl against it)
# Environment (all optional):
#   TDM_FAULT_DIR        (.work/faultbroker)  state, logs, config, certificates
#   TDM_FAULT_AMQP_PORT  (5682)   TDM_FAULT_STOMP_PORT (61633)
#   TDM_FAULT_AMQPS_PORT (5681)   TDM_FAULT_STOMPS_PORT (61634)   TLS, only when $DIR/tls/ holds
#                                 ca.pem, server.pem and server.key (the TLS tests generate them)
#   TDM_FAULT_DIST_PORT  (25682)  TDM_FAULT_WAIT (90 seconds to wait for the node)
#   TDM_FAULT_NODE       (tdmfault)  the node's name (@localhost); the tests give each pytest session
#                                 its own name, ports and directory, so two sessions never share a node
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${TDM_FAULT_DIR:-$HERE/../.work/faultbroker}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
AMQP_PORT="${TDM_FAULT_AMQP_PORT:-5682}"
STOMP_PORT="${TDM_FAULT_STOMP_PORT:-61633}"
AMQPS_PORT="${TDM_FAULT_AMQPS_PORT:-5681}"
STOMPS_PORT="${TDM_FAULT_STOMPS_PORT:-61634}"
DIST_PORT="${TDM_FAULT_DIST_PORT:-25682}"
WAIT="${TDM_FAULT_WAIT:-90}"
NODE="${TDM_FAULT_NODE:-tdmfault}@localhost"
RABBIT_BIN=/usr/lib/rabbitmq/bin

log() { printf 'faultbroker: %s\n' "$*"; }
die() { printf 'faultbroker: error: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The node's own environment: its own name, ports, data, logs, config, plugins and cookie.
node_env() {
    export HOME="$DIR" RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$DIST_PORT" RABBITMQ_MNESIA_BASE="$DIR/mnesia" RABBITMQ_LOG_BASE="$DIR/log" \
        RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" RABBITMQ_PID_FILE="$DIR/rabbit.pid" \
        RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
}

write_config() {
    mkdir -p "$DIR/mnesia" "$DIR/log"
    : >"$DIR/rabbitmq-env.conf"
    [ -f "$DIR/.erlang.cookie" ] || { printf 'TDMFAULT%s' "$RANDOM$RANDOM" >"$DIR/.erlang.cookie"; chmod 400 "$DIR/.erlang.cookie"; }
    echo '[rabbitmq_stomp].' >"$DIR/enabled_plugins"
    {
        echo "listeners.tcp.default = 127.0.0.1:$AMQP_PORT"
        echo "stomp.listeners.tcp.1 = 127.0.0.1:$STOMP_PORT"
        echo "loopback_users = none"
        echo "log.file.level = info"
        if [ -f "$DIR/tls/server.pem" ]; then
            echo "listeners.ssl.default = 127.0.0.1:$AMQPS_PORT"
            echo "stomp.listeners.ssl.1 = 127.0.0.1:$STOMPS_PORT"
            echo "ssl_options.cacertfile = $DIR/tls/ca.pem"
            echo "ssl_options.certfile = $DIR/tls/server.pem"
            echo "ssl_options.keyfile = $DIR/tls/server.key"
            echo "ssl_options.verify = verify_none"
            echo "ssl_options.fail_if_no_peer_cert = false"
        fi
    } >"$DIR/rabbitmq.conf"
    # A short channel tick lets the consumer_timeout test see a timeout in seconds, not a minute.
    echo '[{rabbit, [{channel_tick_interval, 500}]}].' >"$DIR/advanced.config"
}

# True when pid $1 is our node: a pid file left by a crash may name a pid another process has
# since been given, and no command here may signal anything but our own node.
is_our_node() {
    [ -n "$1" ] && tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -qxF "RABBITMQ_NODENAME=$NODE"
}

# The pid file, else whoever listens on our distribution port (a failed second start of the
# node, e.g. "dist_port_already_used", removes the pid file while the first node runs on) —
# either only if it is our node.
node_pid() {
    local pid=""
    [ -s "$DIR/rabbit.pid" ] && pid="$(cat "$DIR/rabbit.pid")"
    if is_our_node "$pid"; then echo "$pid"; return 0; fi
    pid="$(ss -ltnpH "sport = :$DIST_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
    if is_our_node "$pid"; then echo "$pid"; fi
}

up() {
    if port_open "$STOMP_PORT" && port_open "$AMQP_PORT"; then log "already up"; return 0; fi
    write_config
    node_env
    log "starting $NODE (AMQP $AMQP_PORT, STOMP $STOMP_PORT) in $DIR"
    setsid "$RABBIT_BIN/rabbitmq-server" >"$DIR/log/console.log" 2>&1 </dev/null &
    local deadline=$(( $(date +%s) + WAIT ))
    until port_open "$STOMP_PORT" && port_open "$AMQP_PORT"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$NODE did not open its ports within ${WAIT}s; see $DIR/log/"
        sleep 0.5
    done
    log "up (pid $(node_pid))"
}

down() {
    local pid
    pid="$(node_pid || true)"
    [ -n "$pid" ] || { log "not running"; return 0; }
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    rm -f "$DIR/rabbit.pid"
    ! port_open "$AMQP_PORT" && ! port_open "$STOMP_PORT" || die "the node stopped but its ports still answer"
    log "down"
}

# kill: SIGKILL the node's beam.smp (no shutdown, message store not closed): a crash, not a stop.
# What it leaves behind and why `up` still works: the pid file (removed here; node_pid checks the
# process anyway), the epmd registration (epmd drops it when the node's socket to it closes, which
# the kernel does at once) and the dist/AMQP/STOMP ports (closed with the process; waited for here).
# The start-up script that ran the node exits with it; its erl_child_setup helper sees its parent
# gone and exits too.
crash() {
    local pid
    pid="$(node_pid || true)"
    [ -n "$pid" ] || die "not running (no process of node $NODE found)"
    kill -KILL "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    ! kill -0 "$pid" 2>/dev/null || die "pid $pid survived SIGKILL"
    rm -f "$DIR/rabbit.pid"
    for _ in $(seq 1 40); do
        port_open "$AMQP_PORT" || port_open "$STOMP_PORT" || port_open "$DIST_PORT" || break
        sleep 0.25
    done
    ! port_open "$AMQP_PORT" && ! port_open "$STOMP_PORT" && ! port_open "$DIST_PORT" \
        || die "the node was killed but one of its ports still answers"
    log "killed (SIGKILL, pid $pid)"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    up) up ;;
    down) down ;;
    restart) down; up ;;
    freeze) pid="$(node_pid)"; [ -n "$pid" ] || die "not running"; kill -STOP "$pid" && log "frozen (SIGSTOP)" ;;
    thaw) pid="$(node_pid)"; [ -n "$pid" ] || die "not running"; kill -CONT "$pid" && log "thawed (SIGCONT)" ;;
    kill) crash ;;
    pid) node_pid ;;
    ctl) node_env; "$RABBIT_BIN/rabbitmqctl" -n "$NODE" "$@" ;;
    *) die "usage: $0 up|down|restart|freeze|thaw|kill|pid|ctl ARGS..." ;;
esac
