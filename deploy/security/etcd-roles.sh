#!/usr/bin/env bash
# Docket's least-privilege etcd roles and users, created with etcdctl.
#
#   docket-controller  readwrite <prefix>/            everything Docket's controller keeps
#   docket-app         readwrite <prefix>/{jobs,cronjobs,queues,services}/   desired objects
#                      readwrite <prefix>/queue-items/  produce messages of etcd Queues
#                      readwrite <prefix>/queue-dead/   `docket queue dead|requeue`
#                      read      <prefix>/status/ and <prefix>/executions/   get, describe
#   (docket-app: nothing on <prefix>/secrets/, <prefix>/controller/, <prefix>/queue-claims/)
#
# controller/store/roles.py defines the same grants for `docket up --secure`;
# tests/security/test_etcd_roles.py runs this script and checks that etcd then holds exactly
# those. Reasons for each grant: docs/security.md.
#
# Connection flags are etcdctl's own, through its environment (ETCDCTL_ENDPOINTS,
# ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER=root, ETCDCTL_PASSWORD, ...), so
# no password appears on a command line. Running it again is safe: it adds what is missing
# and sets the passwords given; it never removes a grant (etcdctl role revoke-permission).
#
# Usage:
#   deploy/security/etcd-roles.sh [--prefix /docket]
#       [--controller-password-file FILE] [--app-password-file FILE]
#       [--enable-auth ROOT_PASSWORD_FILE]   # create root and turn authentication on
#       [--print]                            # print the grants (role permission key), no etcd
#       [--namespace NS]                     # instead: role and user docket-app-NS, limited
#                                            # to namespace NS (password: --app-password-file)
# A user that does not exist yet needs its password file. DOCKET_ETCDCTL names the etcdctl
# binary (default: etcdctl on PATH, else the one next to this checkout's .venv).
set -euo pipefail

prefix=/docket
controller_pw=""
app_pw=""
root_pw=""
print_only=0
namespace=""

usage() { sed -n '/^# Usage:/,/^# binary/p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --controller-password-file) controller_pw="${2:?}"; shift 2 ;;
    --app-password-file) app_pw="${2:?}"; shift 2 ;;
    --enable-auth) root_pw="${2:?}"; shift 2 ;;
    --print) print_only=1; shift ;;
    --namespace) namespace="${2:?--namespace needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "etcd-roles.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$prefix" in
  /*/|/) echo "etcd-roles.sh: --prefix must start with '/' and not end with '/'" >&2; exit 2 ;;
  /*) ;;
  *) echo "etcd-roles.sh: --prefix must start with '/' and not end with '/'" >&2; exit 2 ;;
esac

if [ -n "$namespace" ] && ! [[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]]; then
  echo "etcd-roles.sh: --namespace must be a DNS-1123 label" >&2; exit 2
fi

# One team's role: its own namespace only (roles.py namespace_grants()). A shared docket-app
# lets any team write objects into any namespace — and so use that namespace's secrets and
# Mesos role; give each team its own.
ns_grants() {
  local r="docket-app-$namespace" p k
  for p in executions status; do
    for k in cronjobs jobs queues services; do echo "$r read $prefix/$p/$k/$namespace/"; done
  done
  for k in cronjobs jobs queue-dead queue-items queues services; do
    echo "$r readwrite $prefix/$k/$namespace/"
  done
}

# role permission key: every key starting with <key>. Keep in step with roles.py grants().
grants() {
  echo "docket-app read $prefix/executions/"
  echo "docket-app read $prefix/status/"
  echo "docket-app readwrite $prefix/cronjobs/"
  echo "docket-app readwrite $prefix/jobs/"
  echo "docket-app readwrite $prefix/queue-dead/"
  echo "docket-app readwrite $prefix/queue-items/"
  echo "docket-app readwrite $prefix/queues/"
  echo "docket-app readwrite $prefix/services/"
  echo "docket-controller readwrite $prefix/"
}

if [ "$print_only" = 1 ]; then
  if [ -n "$namespace" ]; then ns_grants; else grants; fi
  exit 0
fi

etcdctl="${DOCKET_ETCDCTL:-}"
if [ -z "$etcdctl" ]; then
  if command -v etcdctl >/dev/null; then
    etcdctl=etcdctl
  else
    etcdctl="$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/etcdctl"
  fi
fi

for f in "$controller_pw" "$app_pw" "$root_pw"; do
  if [ -n "$f" ] && [ ! -r "$f" ]; then
    echo "etcd-roles.sh: cannot read password file $f" >&2; exit 1
  fi
done

exists() { "$etcdctl" "$1" get "$2" >/dev/null 2>&1; }

# A user with its role; the password (from a file, through stdin) when given.
user() {
  local name="$1" role="$2" pwfile="$3"
  if exists user "$name"; then
    if [ -n "$pwfile" ]; then
      "$etcdctl" user passwd "$name" --interactive=false <"$pwfile" >/dev/null
    fi
  elif [ -n "$pwfile" ]; then
    "$etcdctl" user add "$name" --interactive=false <"$pwfile" >/dev/null
  else
    echo "etcd-roles.sh: user $name does not exist: give its password file" >&2; exit 1
  fi
  "$etcdctl" user grant-role "$name" "$role" >/dev/null
  echo "user $name: role $role"
}

if [ -n "$namespace" ]; then
  role="docket-app-$namespace"
  exists role "$role" || "$etcdctl" role add "$role" >/dev/null
  ns_grants | while read -r r permission key; do
    "$etcdctl" role grant-permission "$r" --prefix=true "$permission" "$key" >/dev/null
    echo "role $r: $permission $key*"
  done
  user "$role" "$role" "$app_pw"
  exit 0
fi

for role in docket-controller docket-app; do
  exists role "$role" || "$etcdctl" role add "$role" >/dev/null
done
grants | while read -r role permission key; do
  "$etcdctl" role grant-permission "$role" --prefix=true "$permission" "$key" >/dev/null
  echo "role $role: $permission $key*"
done
user docket-controller docket-controller "$controller_pw"
user docket-app docket-app "$app_pw"

if [ -n "$root_pw" ]; then
  exists user root || "$etcdctl" user add root --interactive=false <"$root_pw" >/dev/null
  # etcdctl creates the root role and grants it to root when it is missing (and logs a
  # warning on the way, shown only if enabling fails).
  if ! out="$("$etcdctl" auth enable 2>&1)"; then echo "$out" >&2; exit 1; fi
  echo "authentication enabled (user root)"
fi
