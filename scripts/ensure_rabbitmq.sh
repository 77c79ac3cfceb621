#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672 before the tests run: start an
# installed but stopped rabbitmq-server, install it from Debian first where it is missing.
# The tests also use rabbitmqctl on this broker (a vhost of their own per run).
# With TEST_AMQP_URI set the tests use that broker as it is, and this does nothing.
set -euo pipefail
[ -n "${TEST_AMQP_URI:-}" ] && exit 0

log() { echo "ensure_rabbitmq: $*"; }
answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

answers && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "RabbitMQ does not answer on 127.0.0.1:5672 and this is not root: install and start rabbitmq-server"; exit 1
  fi
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  log "installing Debian package rabbitmq-server"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
fi
answers && exit 0  # the package's own service may have started it
log "starting rabbitmq-server -detached"
$SUDO rabbitmq-server -detached
for _ in $(seq 1 90); do
  answers && { log "RabbitMQ answers"; exit 0; }
  sleep 1
done
log "RabbitMQ did not answer within 90 s"; exit 1
