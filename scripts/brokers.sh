#!/usr/bin/env bash
# Start (up), stop (down) or show (status) the brokers that tdm-messaging's tests need:
# RabbitMQ with its STOMP plugin (AMQP 5672, STOMP 61613), Redis (6379) and ActiveMQ Classic
# (STOMP 127.0.0.1:61623, project config in scripts/activemq/). Idempotent and fast when all is up.
# `up` on a fresh Debian machine, as root, installs ActiveMQ and enables the STOMP plugin.
# No systemd is assumed: daemons are started directly and checked by speaking to their ports.
# Environment (all optional):
#   TDM_ACTIVEMQ_STOMP_PORT (61623)  TDM_ACTIVEMQ_OPENWIRE_PORT (61626)
#   TDM_ACTIVEMQ_DATA (/var/lib/tdm-activemq as root, else ~/.cache/tdm-activemq)
#   TDM_REPLY_POLICY_EXPIRES_MS (86400000)
#   TDM_BROKERS_WAIT (90: seconds to wait for each broker to answer)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AMQ_CONF="$HERE/activemq"
AMQ_STOMP_PORT="${TDM_ACTIVEMQ_STOMP_PORT:-61623}"
AMQ_OPENWIRE_PORT="${TDM_ACTIVEMQ_OPENWIRE_PORT:-61626}"
if [ "$(id -u)" = 0 ]; then
    AMQ_DATA="${TDM_ACTIVEMQ_DATA:-/var/lib/tdm-activemq}"
else
    AMQ_DATA="${TDM_ACTIVEMQ_DATA:-$HOME/.cache/tdm-activemq}"
fi
AMQ_PIDFILE="$AMQ_DATA/activemq.pid"
AMQ_HOME=/usr/share/activemq
WAIT="${TDM_BROKERS_WAIT:-90}"
REDIS_PORT=6379
RABBIT_STOMP_PORT=61613

log() { printf 'brokers: %s\n' "$*"; }
die() { printf 'brokers: error: %s\n' "$*" >&2; exit 1; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stomp_ok PORT HOST [LOGIN PASSCODE]: a STOMP 1.2 CONNECT there is answered with CONNECTED.
stomp_ok() {
    local reply
    reply="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "CONNECT\naccept-version:1.2\nhost:%s\nlogin:%s\npasscode:%s\nheart-beat:0,0\n\n\0" "$1" "$2" "$3" >&3
        IFS= read -r line <&3 && printf "%s" "$line"
        printf "DISCONNECT\n\n\0" >&3 || true
    ' "$1" "$2" "${3:-}" "${4:-}" 2>/dev/null)" || return 1
    [ "$reply" = CONNECTED ]
}

# wait_for WHAT SECONDS COMMAND...: run COMMAND every 0.5 s until it succeeds, at most SECONDS.
wait_for() {
    local what="$1" secs="$2" deadline
    shift 2
    deadline=$(( $(date +%s) + secs ))
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.5
    done
    log "$what is up"
}

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (run: sudo bash $0 up)"; }

# ---------------------------------------------------------------- RabbitMQ
rabbit_up() {
    if ! port_open 5672; then
        need_root "starting RabbitMQ"
        command -v rabbitmq-server >/dev/null || die "RabbitMQ is not installed (apt-get install rabbitmq-server)"
        log "starting RabbitMQ (rabbitmq-server -detached)"
        rabbitmq-server -detached
        wait_for "RabbitMQ AMQP (5672)" "$WAIT" port_open 5672 \
            || die "RabbitMQ did not open port 5672 within ${WAIT}s; see /var/log/rabbitmq/"
        timeout "$WAIT" rabbitmqctl -q await_startup >/dev/null 2>&1 || true
    fi
    if ! stomp_ok "$RABBIT_STOMP_PORT" / guest guest; then
        need_root "enabling the RabbitMQ STOMP plugin"
        log "enabling rabbitmq_stomp"
        rabbitmq-plugins -q enable rabbitmq_stomp >/dev/null
        wait_for "RabbitMQ STOMP ($RABBIT_STOMP_PORT)" "$WAIT" stomp_ok "$RABBIT_STOMP_PORT" / guest guest \
            || die "RabbitMQ STOMP does not answer a CONNECT on 127.0.0.1:$RABBIT_STOMP_PORT after ${WAIT}s;" \
                   "check 'rabbitmq-plugins list' and /var/log/rabbitmq/"
    fi
    rabbit_policy
}

# The reply-queue policy of reply_expiry=policy mode: queues named [ns/]package/... expire after
# TDM_REPLY_POLICY_EXPIRES_MS of disuse with no queue argument for peers to match. Where a
# queue also has an x-expires argument, RabbitMQ applies the smaller of the two.
rabbit_policy() {
    local expires="${TDM_REPLY_POLICY_EXPIRES_MS:-86400000}" want current
    want="{\"expires\":$expires}"
    # reply queues, with or without a namespace in front (ns/package/5; see transport/namespace.py)
    local pattern='^([^/]+/)?package/'
    current="$(rabbitmqctl -q list_policies 2>/dev/null | awk -F'\t' '$2=="tdm-reply-queues"{print $3 " " $5}')" || true
    if [ "$current" != "$pattern $want" ]; then
        rabbitmqctl -q set_policy --apply-to queues tdm-reply-queues "$pattern" "$want" >/dev/null \
            || die "could not set the RabbitMQ policy tdm-reply-queues"
        log "RabbitMQ policy tdm-reply-queues: $pattern $want"
    fi
}

# ---------------------------------------------------------------- Redis
redis_ok() { [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# redis_binary: the redis-server binary is there, installed (Debian package redis-server) as root.
# Needed even when the shared Redis runs elsewhere: the bench's Celery + Redis-results peer starts a
# private redis-server of its own (bench/private_redis.py: AOF, appendfsync always).
redis_binary() {
    command -v redis-server >/dev/null && return 0
    if [ "$(id -u)" != 0 ]; then
        log "warning: redis-server is not installed; the bench's Celery + Redis peer needs it" \
            "(sudo apt-get install redis-server)"
        return 0
    fi
    log "installing redis-server (Debian package redis-server)"
    if ! apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
        || die "could not install redis-server (apt-get install redis-server)"
}

redis_up() {
    redis_binary
    redis_ok && return 0
    need_root "starting Redis"
    command -v redis-server >/dev/null || die "Redis is not installed (apt-get install redis-server)"
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for "Redis ($REDIS_PORT)" "$WAIT" redis_ok || die "Redis does not answer PING; see /var/log/redis/ci.log"
}

# ---------------------------------------------------------------- ActiveMQ
amq_pid() {
    local pid
    [ -f "$AMQ_PIDFILE" ] || return 1
    pid="$(cat "$AMQ_PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa 'activemq' "/proc/$pid/cmdline" 2>/dev/null || return 1
    printf '%s' "$pid"
}

amq_install() {
    [ -f "$AMQ_HOME/bin/activemq.jar" ] && command -v java >/dev/null && return 0
    need_root "installing ActiveMQ"
    log "installing ActiveMQ (Debian package activemq)"
    if ! apt-cache policy activemq 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq activemq >/dev/null
}

amq_log_tail() {
    for f in "$AMQ_DATA/console.log" "$AMQ_DATA/activemq.log"; do
        [ -f "$f" ] && { printf -- '--- last lines of %s ---\n' "$f" >&2; tail -n 25 "$f" >&2; }
    done
    return 0
}

amq_up() {
    if amq_pid >/dev/null && stomp_ok "$AMQ_STOMP_PORT" localhost; then
        return 0
    fi
    amq_install
    if amq_pid >/dev/null; then
        # Running but not answering yet (still starting): wait below rather than start another.
        log "ActiveMQ (pid $(amq_pid)) is running; waiting for STOMP"
    else
        if port_open "$AMQ_STOMP_PORT"; then
            die "port $AMQ_STOMP_PORT is taken by another program; set TDM_ACTIVEMQ_STOMP_PORT"
        fi
        mkdir -p "$AMQ_DATA/tmp"
        log "starting ActiveMQ: STOMP 127.0.0.1:$AMQ_STOMP_PORT, data $AMQ_DATA, log $AMQ_DATA/activemq.log"
        # Java directly rather than /usr/bin/activemq or the init script: no systemd, no
        # start-stop-daemon user switch, a pid we own, and our config dir on the classpath
        # (log4j.properties is found there).
        setsid nohup java -Xms128m -Xmx512m \
            -Djava.io.tmpdir="$AMQ_DATA/tmp" \
            -Dactivemq.classpath="$AMQ_CONF" \
            -Dactivemq.home="$AMQ_HOME" -Dactivemq.base="$AMQ_DATA" \
            -Dactivemq.conf="$AMQ_CONF" -Dactivemq.data="$AMQ_DATA" \
            -Dlog4j.configuration="file:$AMQ_CONF/log4j.properties" \
            -Dtdm.stomp.port="$AMQ_STOMP_PORT" -Dtdm.openwire.port="$AMQ_OPENWIRE_PORT" \
            -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$AMQ_CONF/activemq.xml" \
            </dev/null >"$AMQ_DATA/console.log" 2>&1 &
        echo $! >"$AMQ_PIDFILE"
    fi
    if ! wait_for "ActiveMQ STOMP ($AMQ_STOMP_PORT)" "$WAIT" amq_answers; then
        amq_log_tail
        die "ActiveMQ does not answer a STOMP CONNECT on 127.0.0.1:$AMQ_STOMP_PORT after ${WAIT}s (logs above)"
    fi
}

# amq_answers: STOMP answers; fails fast (exit 2 from wait_for's view) if the JVM died.
amq_answers() {
    if ! amq_pid >/dev/null; then
        amq_log_tail
        die "ActiveMQ exited during start-up (logs above)"
    fi
    stomp_ok "$AMQ_STOMP_PORT" localhost
}

amq_down() {
    local pid i
    if ! pid="$(amq_pid)"; then
        log "ActiveMQ is not running"
        rm -f "$AMQ_PIDFILE"
        return 0
    fi
    log "stopping ActiveMQ (pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "ActiveMQ did not stop within 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$AMQ_PIDFILE"
}

status() {
    local rc=0
    if port_open 5672; then log "RabbitMQ AMQP 5672: up"; else log "RabbitMQ AMQP 5672: DOWN"; rc=1; fi
    if stomp_ok "$RABBIT_STOMP_PORT" / guest guest; then log "RabbitMQ STOMP $RABBIT_STOMP_PORT: up"; else
        log "RabbitMQ STOMP $RABBIT_STOMP_PORT: DOWN"; rc=1; fi
    if redis_ok; then log "Redis $REDIS_PORT: up"; else log "Redis $REDIS_PORT: DOWN"; rc=1; fi
    if stomp_ok "$AMQ_STOMP_PORT" localhost; then
        log "ActiveMQ STOMP $AMQ_STOMP_PORT: up (pid $(amq_pid || echo '?'), data $AMQ_DATA)"
    else
        log "ActiveMQ STOMP $AMQ_STOMP_PORT: DOWN"; rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    up)
        rabbit_up
        redis_up
        amq_up
        log "all brokers up"
        ;;
    down) amq_down ;;
    status) status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
