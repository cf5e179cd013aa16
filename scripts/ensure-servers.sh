#!/usr/bin/env bash
# Installs the servers the integration tests start as subprocesses (Mosquitto, InfluxDB 1.x,
# VictoriaMetrics), and the headless Chromium that renders the report in a test, from the
# Debian/Ubuntu archive, unless they are all there already.
# Safe to run any number of times; installs nothing when nothing is missing.
set -euo pipefail

PACKAGES=(mosquitto influxdb victoria-metrics chromium)
COMMANDS=(mosquitto influxd victoria-metrics chromium)
# Debian puts mosquitto in sbin, which an ordinary user's PATH lacks.
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

die() {
    echo "ensure-servers: $*" >&2
    exit 1
}

missing_commands() {
    local cmd
    for cmd in "${COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || echo "$cmd"
    done
}

check_privileges() {
    [ "$(id -u)" -eq 0 ] && return
    command -v sudo >/dev/null 2>&1 ||
        die "not root and no sudo; as root run: apt-get install -y ${PACKAGES[*]}"
    sudo -n true 2>/dev/null ||
        die "sudo needs a password here; as root run: apt-get install -y ${PACKAGES[*]}"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo -n "$@"
    fi
}

missing=$(missing_commands)
if [ -z "$missing" ]; then
    echo "ensure-servers: ${COMMANDS[*]} already installed"
    exit 0
fi

echo "ensure-servers: missing ${missing//$'\n'/ } - installing ${PACKAGES[*]}"
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install ${PACKAGES[*]} with this system's package manager"
check_privileges
as_root env DEBIAN_FRONTEND=noninteractive apt-get update ||
    die "apt-get update failed (no network or no package mirror?)"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}" ||
    die "apt-get install ${PACKAGES[*]} failed"

missing=$(missing_commands)
[ -z "$missing" ] || die "still missing after install: ${missing//$'\n'/ }"
echo "ensure-servers: ${COMMANDS[*]} installed"
