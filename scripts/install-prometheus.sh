#!/usr/bin/env bash
# Install the Prometheus server from the Debian/Ubuntu archive, for deploy/prometheus.yml and the
# end-to-end test (tests/test_stack.py). Idempotent: does nothing when `prometheus` is already on PATH.
# Needs root (or run it with sudo). The package's own service is kept from starting, so nothing is left
# listening on port 9090: Anchang starts its own Prometheus, on a port of its choosing.
# Usage: scripts/install-prometheus.sh
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "prometheus is installed: $(command -v prometheus)"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "prometheus is not installed. Install it as root:" >&2
    echo "  sudo $0" >&2
    echo "or: sudo apt-get install --no-install-recommends prometheus" >&2
    exit 1
fi

# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d whether a package may start its service;
# exit code 101 means "no". Put such a policy in place for the install and restore whatever was there.
policy=/usr/sbin/policy-rc.d
backup=""
if [[ -e "$policy" ]]; then
    backup=$(mktemp /usr/sbin/policy-rc.d.anchang.XXXXXX)
    cp -p "$policy" "$backup"
fi
restore_policy() {
    if [[ -n "$backup" ]]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# Written by Anchang scripts/install-prometheus.sh for the duration of an install.\nexit 101\n' \
    >"$policy"
chmod 755 "$policy"

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

restore_policy
trap - EXIT

# Belt and braces: if the service started anyway (an init system that ignores the policy), stop it.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop prometheus.service 2>/dev/null || true
elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    /etc/init.d/prometheus stop || true
fi

echo "prometheus installed: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n 1))"
