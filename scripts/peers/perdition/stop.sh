#!/bin/bash
# Usage: stop.sh [RUNDIR] -- stops both perdition proxies by PID (5 s each, then SIGKILL).
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/perdition/run}
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
stop_pidfiles "$RUNDIR" imap.pid.fg pop3.pid.fg
