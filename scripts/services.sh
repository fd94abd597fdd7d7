#!/usr/bin/env bash
# Start / stop the local services the README uses, bound to 127.0.0.1:
#   Prefect server (UI + API), a Prefect worker on the `process` pool, and the MLflow server
#   (UI + registry) over the project's sqlite:///mlruns.db and ./mlartifacts.
#
#   scripts/services.sh start | stop | status
#   scripts/services.sh serve-start | serve-stop   (`recast serve`, the refiner as an OpenAI proxy)
#
# Process ids, logs and the Prefect home live in $RECAST_SERVICES_DIR (default .services/);
# `source .services/env` points the prefect CLI and recast at these servers.
# Ports and pool: RECAST_PREFECT_PORT (4200), RECAST_MLFLOW_PORT (5000), RECAST_POOL (recast-cpu).
# recast serve: RECAST_SERVE_PORT (8100), RECAST_SERVE_UPSTREAM (local, or e.g.
# http://127.0.0.1:8000/v1), RECAST_SERVE_CHECKPOINT (default: the registry's champion).
set -euo pipefail

DIR=$(mkdir -p "${RECAST_SERVICES_DIR:-.services}" && cd "${RECAST_SERVICES_DIR:-.services}" && pwd)
PREFECT_PORT=${RECAST_PREFECT_PORT:-4200}
MLFLOW_PORT=${RECAST_MLFLOW_PORT:-5000}
POOL=${RECAST_POOL:-recast-cpu}
SERVE_PORT=${RECAST_SERVE_PORT:-8100}
BIN=$(dirname "$(command -v prefect || echo .venv/bin/prefect)")

export PREFECT_HOME="$DIR/prefect" PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"

wait_healthy() {  # name url seconds
  local name=$1 url=$2 deadline=$((SECONDS + $3))
  until "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
    if ((SECONDS > deadline)); then
      echo "error: $name did not answer at $url within $3 s; see $DIR/$name.log" >&2
      tail -n 20 "$DIR/$name.log" >&2 || true
      return 1
    fi
    if ! kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
      echo "error: $name exited; see $DIR/$name.log" >&2
      tail -n 20 "$DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 1
  done
}

launch() {  # name command...
  local name=$1; shift
  if [[ -f "$DIR/$name.pid" ]] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$DIR/$name.pid"))"
    return
  fi
  # setsid: its own process group, so `stop` reaches the children (uvicorn, flow runs) too
  setsid "$@" >"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

start() {
  launch prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_healthy prefect-server "$PREFECT_API_URL/health" 120
  "$BIN/prefect" work-pool inspect "$POOL" >/dev/null 2>&1 ||
    "$BIN/prefect" work-pool create "$POOL" --type process >/dev/null
  launch prefect-worker "$BIN/prefect" worker start --pool "$POOL"
  launch mlflow-server "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --backend-store-uri "sqlite:///$PWD/mlruns.db" --artifacts-destination "$PWD/mlartifacts"
  wait_healthy mlflow-server "$MLFLOW_TRACKING_URI/health" 120
  cat >"$DIR/env" <<ENV
export PREFECT_HOME="$PREFECT_HOME" PREFECT_API_URL="$PREFECT_API_URL"
export MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"
ENV
  echo "Prefect UI  http://127.0.0.1:$PREFECT_PORT   (worker on pool $POOL)"
  echo "MLflow UI   $MLFLOW_TRACKING_URI"
  # MLflow 3.17's UI opens on its GenAI overview whatever the experiment's kind tag says (the
  # GenAI / Model training switch is kept per browser): link the runs table itself.
  local exp
  exp=$("$BIN/python" -c "import mlflow; mlflow.set_tracking_uri('$MLFLOW_TRACKING_URI');
e = mlflow.get_experiment_by_name('${RECAST_EXPERIMENT:-recast}'); print(e.experiment_id if e else '')" 2>/dev/null)
  if [[ -n $exp ]]; then echo "runs table  $MLFLOW_TRACKING_URI/#/experiments/$exp/runs"; fi
  echo "then:       source $DIR/env"
}

serve_start() {
  local args=(serve --host 127.0.0.1 --port "$SERVE_PORT")
  args+=(--upstream "${RECAST_SERVE_UPSTREAM:-local}")
  [[ -n ${RECAST_SERVE_CHECKPOINT:-} ]] && args+=(--checkpoint "$RECAST_SERVE_CHECKPOINT")
  launch recast-serve "$BIN/recast" "${args[@]}"
  wait_healthy recast-serve "http://127.0.0.1:$SERVE_PORT/healthz" 300  # loads the refiner
  echo "recast serve http://127.0.0.1:$SERVE_PORT/v1"
  echo "reload the refiner: kill -HUP $(cat "$DIR/recast-serve.pid")"
}

stop() {
  for name in ${STOP_ONLY:-recast-serve prefect-worker mlflow-server prefect-server}; do
    local pidfile="$DIR/$name.pid"
    [[ -f $pidfile ]] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -INT -- "-$pid" 2>/dev/null || true  # SIGINT: `prefect worker` ignores SIGTERM
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

status() {
  for name in prefect-server prefect-worker mlflow-server recast-serve; do
    if [[ -f "$DIR/$name.pid" ]] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$DIR/$name.pid"))"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  serve-start) serve_start ;;
  serve-stop) STOP_ONLY=recast-serve stop ;;
  *) echo "usage: $0 start|stop|status|serve-start|serve-stop" >&2; exit 2 ;;
esac
