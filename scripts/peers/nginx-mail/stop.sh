#!/bin/bash
# Usage: stop.sh [RUNDIR] -- stops nginx (master PID; it takes its worker down) and
# auth_http.py by PID, waiting at most 5 s each before SIGKILL.
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/nginx-mail/run}
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
stop_pidfiles "$RUNDIR" nginx.pid.fg auth.pid
