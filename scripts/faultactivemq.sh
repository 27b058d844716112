#!/usr/bin/env bash
# Start (up), stop (down), freeze (SIGSTOP), thaw (SIGCONT), kill (SIGKILL) or restart a *private*
# ActiveMQ Classic instance for the fault tests, so they may kill or freeze it without touching the
# shared ActiveMQ that scripts/brokers.sh runs for everyone (STOMP 61623).
# Usage: faultactivemq.sh up|down|restart|freeze|thaw|kill|pid|log
# It runs the project's own config (scripts/activemq/activemq.xml, unchanged) with its own data
# directory and ports, given as the system properties that file reads; KahaDB is its store, so
# persistent messages are on disk and survive a kill.
# Environment (all optional):
#   TDM_FAULT_AMQ_DIR            (.work/faultactivemq)  data (KahaDB), logs, pid file
#   TDM_FAULT_AMQ_STOMP_PORT     (61643)   TDM_FAULT_AMQ_OPENWIRE_PORT (61646)
#   TDM_FAULT_WAIT               (90 seconds to wait for the broker to answer a STOMP CONNECT)
# The tests give each pytest session its own directory and free ports, so two sessions never share
# an instance. The package (Debian `activemq`) is installed by `bash scripts/brokers.sh up`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="$HERE/activemq"
AMQ_HOME=/usr/share/activemq
DIR="${TDM_FAULT_AMQ_DIR:-$HERE/../.work/faultactivemq}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
STOMP_PORT="${TDM_FAULT_AMQ_STOMP_PORT:-61643}"
OPENWIRE_PORT="${TDM_FAULT_AMQ_OPENWIRE_PORT:-61646}"
WAIT="${TDM_FAULT_WAIT:-90}"
PIDFILE="$DIR/activemq.pid"

log() { printf 'faultactivemq: %s\n' "$*"; }
die() { printf 'faultactivemq: error: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stomp_ok: a STOMP 1.2 CONNECT on our port is answered with CONNECTED.
stomp_ok() {
    local reply
    reply="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0" >&3
        IFS= read -r line <&3 && printf "%s" "$line"
        printf "DISCONNECT\n\n\0" >&3 || true
    ' "$STOMP_PORT" 2>/dev/null)" || return 1
    [ "$reply" = CONNECTED ]
}

# The JVM of *this* instance: the pid file's process, and only if its command line names our data
# directory, so a stale pid file can never make us signal another broker (the shared one above all).
amq_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "-Dactivemq.data=$DIR" || return 1
    printf '%s\n' "$pid"
}

log_tail() {
    local f
    for f in "$DIR/console.log" "$DIR/activemq.log"; do
        [ -f "$f" ] && { printf -- '--- last lines of %s ---\n' "$f" >&2; tail -n 25 "$f" >&2; }
    done
    return 0
}

up() {
    local pid
    if pid="$(amq_pid)"; then
        kill -CONT "$pid" 2>/dev/null || true  # left frozen by an interrupted test: it could never answer
        if stomp_ok; then log "already up (pid $pid)"; return 0; fi
    fi
    [ -f "$AMQ_HOME/bin/activemq.jar" ] && command -v java >/dev/null \
        || die "ActiveMQ is not installed; run: sudo bash scripts/brokers.sh up (installs the Debian package activemq)"
    if ! amq_pid >/dev/null; then
        for port in "$STOMP_PORT" "$OPENWIRE_PORT"; do
            port_open "$port" && die "port $port is taken by another program; set TDM_FAULT_AMQ_STOMP_PORT/_OPENWIRE_PORT"
        done
        mkdir -p "$DIR/tmp"
        log "starting ActiveMQ (STOMP $STOMP_PORT, OpenWire $OPENWIRE_PORT) in $DIR"
        # The shared broker's command (scripts/brokers.sh), with our own data directory and ports;
        # a smaller heap, since the fault tests move a few messages only.
        setsid nohup java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 \
            -Djava.io.tmpdir="$DIR/tmp" \
            -Dactivemq.classpath="$CONF" \
            -Dactivemq.home="$AMQ_HOME" -Dactivemq.base="$DIR" \
            -Dactivemq.conf="$CONF" -Dactivemq.data="$DIR" \
            -Dlog4j.configuration="file:$CONF/log4j.properties" \
            -Dtdm.stomp.port="$STOMP_PORT" -Dtdm.openwire.port="$OPENWIRE_PORT" \
            -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$CONF/activemq.xml" \
            </dev/null >"$DIR/console.log" 2>&1 &
        echo $! >"$PIDFILE"
    fi
    local deadline=$(( $(date +%s) + WAIT ))
    until stomp_ok; do
        amq_pid >/dev/null || { log_tail; die "ActiveMQ exited during start-up (logs above)"; }
        [ "$(date +%s)" -lt "$deadline" ] || { log_tail; die "no STOMP CONNECTED on $STOMP_PORT within ${WAIT}s (logs above)"; }
        sleep 0.25
    done
    log "up (pid $(amq_pid))"
}

# wait_gone PID SECONDS: wait until PID has exited.
wait_gone() {
    local i
    for i in $(seq 1 $(( $2 * 4 ))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done
    ! kill -0 "$1" 2>/dev/null
}

ports_closed() {
    local i
    for i in $(seq 1 40); do
        ! port_open "$STOMP_PORT" && ! port_open "$OPENWIRE_PORT" && return 0
        sleep 0.25
    done
    die "the broker is gone but port $STOMP_PORT or $OPENWIRE_PORT still answers"
}

down() {
    local pid
    pid="$(amq_pid)" || { log "not running"; rm -f "$PIDFILE"; return 0; }
    kill -CONT "$pid" 2>/dev/null || true  # a frozen JVM cannot run its shutdown hook
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 30; then
        log "did not stop within 30 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$PIDFILE"
    ports_closed
    log "down"
}

# kill: SIGKILL the JVM (no shutdown hook, KahaDB not closed): a crash, not a stop.
crash() {
    local pid
    pid="$(amq_pid)" || die "not running"
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid"
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    rm -f "$PIDFILE"
    ports_closed
    log "killed (SIGKILL, pid $pid)"
}

cmd="${1:-}"
case "$cmd" in
    up) up ;;
    down) down ;;
    restart) down; up ;;
    kill) crash ;;
    freeze) pid="$(amq_pid)" || die "not running"; kill -STOP "$pid" && log "frozen (SIGSTOP)" ;;
    thaw) pid="$(amq_pid)" || die "not running"; kill -CONT "$pid" && log "thawed (SIGCONT)" ;;
    pid) amq_pid || die "not running" ;;
    log) log_tail 2>&1 ;;
    *) die "usage: $0 up|down|restart|freeze|thaw|kill|pid|log" ;;
esac
