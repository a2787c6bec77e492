#!/bin/sh
# Install Mosquitto (broker + mosquitto_passwd + clients) where this machine lets us: root with
# apt-get, as on CI. Called by `make test` (target `mosquitto` in the Makefile); idempotent.
# Anywhere else it only prints a note: the broker tests then skip locally and FAIL under CI=true
# (tests/brokers.py), so a CI machine without Mosquitto never passes quietly.
#
# The tests start their own brokers on free loopback ports and never use the distro's service;
# that service, if the package starts it, is stopped and disabled so it does not hold port 1883.
set -u

have_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

if have_mosquitto; then
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: mosquitto is not installed and this is not root with apt-get;" \
         "install mosquitto >= 2.0 (broker and mosquitto_passwd) to run the Mosquitto tests" \
         "(they skip here, and fail under CI=true)" >&2
    exit 0
fi

# Keep the package's maintainer scripts from starting the service: policy-rc.d exit 101 means
# "do not start" to invoke-rc.d and deb-systemd-invoke. Only ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, tools/mosquitto/install.sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    ours=1
fi
cleanup() {
    if [ -n "$ours" ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "installing mosquitto with apt-get (for the broker tests)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
    echo "warning: apt-get update failed; trying the install from the lists we have" >&2
fi
if ! apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null; then
    echo "warning: apt-get install mosquitto failed: the Mosquitto tests will skip here" \
         "and fail under CI=true" >&2
    exit 0
fi

# Belt and braces: if a service manager started the broker anyway, stop it and keep it off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    systemctl disable --now mosquitto >/dev/null 2>&1 || echo "warning: could not stop the mosquitto service" >&2
fi
if [ -x /etc/init.d/mosquitto ] && /etc/init.d/mosquitto status >/dev/null 2>&1; then
    /etc/init.d/mosquitto stop >/dev/null 2>&1 || echo "warning: could not stop the mosquitto service" >&2
fi
have_mosquitto && echo "mosquitto installed: $(command -v mosquitto || echo /usr/sbin/mosquitto)" >&2
exit 0
