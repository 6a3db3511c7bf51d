#!/usr/bin/env bash
# Install or upgrade piagent as a systemd service on Raspberry Pi OS / Debian:
#   sudo make install        (or: sudo deploy/install.sh)
# Safe to run again to upgrade: the settings in /etc/piagent/piagent.env and
# the agents in /etc/piagent/agents/ are kept; the current defaults are written
# beside them as piagent.env.default for comparison.
#
# Options (for packaging and tests):
#   --no-system   no useradd, chown, systemctl or nginx reload (no root needed)
#   --no-venv     do not create the venv or pip-install piagent into it
# DESTDIR=/some/dir installs under that directory instead of /.
# HOST_NAME=pi HOST_ADDRESSES="192.168.1.20 fd00::20" stand in for `hostname`
# and `hostname -I` in the ALLOWED_HOSTS of a fresh install (tests).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
PREFIX=/opt/piagent               # the venv; wsgi.py and gunicorn.conf.py in app/
CONFDIR=/etc/piagent              # piagent.env and agents/
UNIT=/etc/systemd/system/piagent.service
NGINX_SITE=/etc/nginx/sites-available/piagent
SERVICE_USER=piagent

system=1
venv=1
for arg in "$@"; do
    case "$arg" in
        --no-system) system=0 ;;
        --no-venv) venv=0 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $system == 1 && $EUID != 0 ]]; then
    echo "install.sh: run as root: sudo make install" >&2
    exit 1
fi

say() { echo "piagent install: $*"; }

if [[ $system == 1 ]] && ! getent passwd "$SERVICE_USER" >/dev/null; then
    say "creating system user $SERVICE_USER"
    useradd --system --user-group --home-dir /var/lib/piagent --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi

if [[ $venv == 1 ]]; then
    if [[ ! -x $DESTDIR$PREFIX/bin/python ]]; then
        say "creating the venv in $PREFIX"
        "$PYTHON" -m venv "$DESTDIR$PREFIX" || {
            echo "install.sh: on Debian: sudo apt-get install python3-venv" >&2
            exit 1
        }
    fi
    say "installing piagent and its dependencies into $PREFIX"
    # Build from a copy: pip builds in the source tree, which would leave
    # root-owned build files in the user's checkout.
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    cp -r "$SRC/piagent" "$SRC/setup.cfg" "$SRC/pyproject.toml" "$SRC/README.md" \
        "$build/"
    "$DESTDIR$PREFIX/bin/pip" install --quiet --upgrade pip
    "$DESTDIR$PREFIX/bin/pip" install --quiet "$build"
    # Same version number, new code: reinstall piagent itself on an upgrade.
    "$DESTDIR$PREFIX/bin/pip" install --quiet --force-reinstall --no-deps "$build"
fi

install -d -m 0755 "$DESTDIR$PREFIX/app"
install -m 0644 "$SRC/wsgi.py" "$SRC/gunicorn.conf.py" "$SRC/README.md" \
    "$DESTDIR$PREFIX/app/"
# The README's links point into docs/.
install -d -m 0755 "$DESTDIR$PREFIX/app/docs"
install -m 0644 "$SRC"/docs/*.md "$DESTDIR$PREFIX/app/docs/"

# Settings: the defaults of .env.example, pointed at the agents directory and
# the API keys file, logging JSON for journald. A file that exists is the
# user's and is kept.
install -d -m 0755 "$DESTDIR$CONFDIR" "$DESTDIR$CONFDIR/agents"
keys="$DESTDIR$CONFDIR/keys"
# nginx serves the whole LAN on port 80, so a fresh install gets an API key
# rather than an open model: one key, readable by root and the service only.
if [[ ! -e $keys && ! -e $DESTDIR$CONFDIR/piagent.env ]]; then
    say "writing a new API key for the owner 'admin' to $CONFDIR/keys" \
        "(show it: sudo cat $CONFDIR/keys)"
    (
        umask 077
        { echo "# API keys for piagent, one a line: NAME KEY, NAME sha256:HEX or KEY."
          echo "# Add one: sudo $PREFIX/bin/python -m piagent keys --env-file" \
               "$CONFDIR/piagent.env add NAME; then: sudo systemctl reload piagent"
          echo "admin $("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')"
        } > "$keys"
    )
    chmod 0640 "$keys"
    if [[ $system == 1 ]]; then
        chown "root:$SERVICE_USER" "$keys"
    fi
fi
# The names piagent answers to (its Host check, against DNS rebinding): nginx
# passes the name a client used, so this machine's name, <name>.local (mDNS)
# and its LAN addresses, besides loopback for tools on the Pi itself.
host_name=${HOST_NAME-$(hostname 2>/dev/null || true)}
host_name=${host_name%%.*}
host_name=${host_name,,}
allowed="localhost,*.localhost,127.0.0.1,::1"
if [[ $host_name =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]]; then
    allowed+=",$host_name,$host_name.local"
fi
for address in ${HOST_ADDRESSES-$(hostname -I 2>/dev/null || true)}; do
    if [[ $address =~ ^[0-9a-fA-F.:]+$ ]]; then
        allowed+=",$address"
    fi
done
defaults="$DESTDIR$CONFDIR/piagent.env.default"
sed -e "s|^AGENTS_DIR=.*|AGENTS_DIR=$CONFDIR/agents|" \
    -e "s|^ALLOWED_HOSTS=.*|ALLOWED_HOSTS=$allowed|" \
    -e "s|^API_KEYS_FILE=.*|API_KEYS_FILE=$CONFDIR/keys|" \
    -e "s|^LOG_FORMAT=.*|LOG_FORMAT=json|" \
    -e "s|^# piagent settings: copy to .env.*|# piagent settings for the piagent service (systemd EnvironmentFile).|" \
    -e "s|^# The environment wins over this file.*|# After a change: sudo systemctl restart piagent|" \
    "$SRC/.env.example" > "$defaults"
chmod 0644 "$defaults"
if [[ -e $DESTDIR$CONFDIR/piagent.env ]]; then
    say "keeping $CONFDIR/piagent.env (new defaults: $CONFDIR/piagent.env.default)"
    if ! grep -Eq '^API_KEYS(_FILE)?=[^[:space:]#]' "$DESTDIR$CONFDIR/piagent.env"; then
        say "WARNING: $CONFDIR/piagent.env sets no API keys: anyone who reaches" \
            "nginx can use the model. See docs/security.md."
    fi
    if ! grep -q '^ALLOWED_HOSTS=' "$DESTDIR$CONFDIR/piagent.env"; then
        say "note: $CONFDIR/piagent.env has no ALLOWED_HOSTS, so piagent answers" \
            "only to loopback, this machine's name and <name>.local; to be" \
            "reached by its address too, add: ALLOWED_HOSTS=$allowed"
    fi
else
    say "writing $CONFDIR/piagent.env"
    say "piagent answers to the host names $allowed" \
        "(ALLOWED_HOSTS in $CONFDIR/piagent.env: add any other name clients use)"
    install -m 0640 "$defaults" "$DESTDIR$CONFDIR/piagent.env"
    if [[ $system == 1 ]]; then
        chown "root:$SERVICE_USER" "$DESTDIR$CONFDIR/piagent.env"
    fi
fi

install -d -m 0755 "$(dirname "$DESTDIR$UNIT")"
install -m 0644 "$SRC/deploy/piagent.service" "$DESTDIR$UNIT"

# nginx, when it is installed: the site once (later edits, e.g. for TLS, are
# kept), enabled in place of Debian's default site, which also claims port 80.
nginx_changed=0
if [[ -d $DESTDIR/etc/nginx/sites-available ]]; then
    if [[ ! -e $DESTDIR$NGINX_SITE ]]; then
        say "installing the nginx site $NGINX_SITE"
        install -m 0644 "$SRC/deploy/nginx/piagent.conf" "$DESTDIR$NGINX_SITE"
        install -d -m 0755 "$DESTDIR/etc/nginx/sites-enabled"
        ln -sfn "$NGINX_SITE" "$DESTDIR/etc/nginx/sites-enabled/piagent"
        if [[ -L $DESTDIR/etc/nginx/sites-enabled/default ]]; then
            say "disabling nginx's default site (it also serves port 80)"
            rm "$DESTDIR/etc/nginx/sites-enabled/default"
        fi
        nginx_changed=1
    else
        say "keeping the nginx site $NGINX_SITE"
    fi
else
    say "nginx is not installed: skipping the site (see deploy/nginx/piagent.conf)"
fi

if [[ $system == 1 ]]; then
    systemctl daemon-reload
    systemctl enable piagent.service
    say "restarting piagent"
    systemctl restart piagent.service
    if [[ $nginx_changed == 1 ]]; then
        nginx -t && systemctl reload-or-restart nginx.service
    fi
    say "done: systemctl status piagent; journalctl -u piagent -f"
else
    say "done (no system changes made)"
fi
