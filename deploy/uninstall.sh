#!/usr/bin/env bash
# Remove the piagent service: sudo make uninstall (or: sudo deploy/uninstall.sh).
# Keeps /etc/piagent (settings, agents), /var/lib/piagent and the piagent user,
# so a later install picks them up again; --purge removes those too.
#
# Options: --purge; --no-system (no systemctl, userdel or nginx reload).
# DESTDIR=/some/dir removes from under that directory instead of /.
set -euo pipefail

DESTDIR=${DESTDIR:-}
PREFIX=/opt/piagent
CONFDIR=/etc/piagent
UNIT=/etc/systemd/system/piagent.service
NGINX_SITE=/etc/nginx/sites-available/piagent
SERVICE_USER=piagent

system=1
purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        --no-system) system=0 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $system == 1 && $EUID != 0 ]]; then
    echo "uninstall.sh: run as root: sudo make uninstall" >&2
    exit 1
fi

say() { echo "piagent uninstall: $*"; }

if [[ $system == 1 ]] && systemctl cat piagent.service >/dev/null 2>&1; then
    say "stopping and disabling piagent"
    systemctl disable --now piagent.service
fi
rm -f "$DESTDIR$UNIT"
rm -rf "$DESTDIR$PREFIX"

nginx_changed=0
if [[ -L $DESTDIR/etc/nginx/sites-enabled/piagent ]]; then
    say "disabling the nginx site (re-enable Debian's with:" \
        "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/)"
    rm "$DESTDIR/etc/nginx/sites-enabled/piagent"
    nginx_changed=1
fi

if [[ $purge == 1 ]]; then
    say "removing $CONFDIR, /var/lib/piagent and the nginx site"
    rm -rf "$DESTDIR$CONFDIR" "$DESTDIR/var/lib/piagent" "$DESTDIR$NGINX_SITE"
    if [[ $system == 1 ]] && getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER"
    fi
else
    say "kept $CONFDIR (settings, agents); --purge removes it"
fi

if [[ $system == 1 ]]; then
    systemctl daemon-reload
    if [[ $nginx_changed == 1 ]] && command -v nginx >/dev/null; then
        nginx -t && systemctl reload nginx.service
    fi
fi
say "done"
