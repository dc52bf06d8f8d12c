#!/bin/sh
# Installs what `make bench` needs from Debian when it is missing: etcd-server,
# etcd-client (etcdctl) and redis-server. Needs root for apt-get; never starts a service
# (the benchmark starts its own processes on loopback ports and stops them by PID).
set -eu
missing=""
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
command -v etcdctl >/dev/null 2>&1 || missing="$missing etcd-client"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "bench: missing Debian packages:$missing; install them as root (apt-get install -y$missing)" >&2
    exit 1
fi
echo "bench: installing$missing" >&2
apt-get update -q
# policy-rc.d 101: the packages' postinst must not start system-wide etcd/redis services
rcd=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$rcd" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$rcd"
    chmod +x "$rcd"
    created=1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
[ "$created" = 1 ] && rm -f "$rcd"
exit 0
