#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on localhost:5672, and stop it again
# afterwards only if we were the ones who started it.
#
#   rabbitmq.sh ensure OWNER   start (installing from Debian's packages if missing)
#   rabbitmq.sh release OWNER  stop it if OWNER started it
#
# OWNER names who asked (run, test), so `make test` never stops the broker
# that a running `make run` started, and neither stops one it found running.
set -euo pipefail

action=${1:?usage: rabbitmq.sh ensure|release OWNER}
owner=${2:?usage: rabbitmq.sh ensure|release OWNER}
var_dir=${LINLI_VAR_DIR:-./var}
marker="$var_dir/rabbitmq.started-by-$owner"
host=${LINLI_RABBITMQ_HOST:-127.0.0.1}
port=${LINLI_RABBITMQ_PORT:-5672}

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

wait_for_broker() {
  for _ in $(seq 1 120); do
    if answers && rabbitmqctl -q await_startup >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "RabbitMQ did not come up on $host:$port within 120 s" >&2
  return 1
}

case "$action" in
  ensure)
    if answers; then
      echo "RabbitMQ: already answering on $host:$port (left as found)"
      exit 0
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      echo "RabbitMQ: not installed; installing rabbitmq-server from Debian's packages"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # The package's postinst may try to start the broker through an init
      # system a container lacks; we start it ourselves below either way.
      apt-get install -y -qq rabbitmq-server >/dev/null || true
      command -v rabbitmq-server >/dev/null 2>&1 || { echo "RabbitMQ: installation failed" >&2; exit 1; }
    fi
    if ! answers; then
      echo "RabbitMQ: starting rabbitmq-server"
      rabbitmq-server -detached
      mkdir -p "$var_dir"
      touch "$marker"
    fi
    wait_for_broker
    echo "RabbitMQ: answering on $host:$port"
    ;;
  release)
    if [ -f "$marker" ]; then
      rm -f "$marker"
      if [ -n "$(ls "$var_dir"/rabbitmq.started-by-* 2>/dev/null)" ]; then
        echo "RabbitMQ: still used by another linli command; left running"
      else
        echo "RabbitMQ: stopping the broker this command started"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
      fi
    fi
    ;;
  *)
    echo "usage: rabbitmq.sh ensure|release OWNER" >&2
    exit 2
    ;;
esac
