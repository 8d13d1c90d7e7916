#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` (Debian's prometheus package, 2.42) are installed.
#
#   prometheus.sh ensure   install them if missing; start nothing
#
# Tests start their own prometheus on a free port with their own config and
# storage directory; the system service the package ships is not used, so the
# install is done with starting services forbidden (policy-rc.d), and a
# prometheus the package's postinst started anyway is stopped again.
set -euo pipefail

action=${1:?usage: prometheus.sh ensure}

installed() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

case "$action" in
  ensure)
    if installed; then
      echo "Prometheus: $(prometheus --version 2>&1 | head -1)"
      exit 0
    fi
    echo "Prometheus: not installed; installing prometheus from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    before=$(pgrep -x prometheus || true)
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
      # 101: "action not allowed" — invoke-rc.d then starts no service during the install.
      printf '#!/bin/sh\nexit 101\n' > "$policy"
      chmod +x "$policy"
      made_policy=1
    fi
    trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # Should the postinst have started the system service anyway, stop what it started (only that).
    for pid in $(pgrep -x prometheus || true); do
      case " $before " in *" $pid "*) ;; *) echo "Prometheus: stopping the service the package started (pid $pid)"; kill "$pid" ;; esac
    done
    installed || { echo "Prometheus: installation failed" >&2; exit 1; }
    echo "Prometheus: $(prometheus --version 2>&1 | head -1)"
    ;;
  *)
    echo "usage: prometheus.sh ensure" >&2
    exit 2
    ;;
esac
