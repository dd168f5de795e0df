#!/usr/bin/env bash
# Installs OpenSSH's server binary for the hyperssh tests (transport-native/tests/ssh_interop.rs
# runs its own /usr/sbin/sshd on a free 127.0.0.1 port, with a temporary configuration and host
# key). Idempotent: nothing happens when /usr/sbin/sshd and ssh are there. No system sshd is
# started: while apt installs, a policy-rc.d that refuses every service start is in place (an
# existing one is left as it is), so nothing listens on port 22 afterwards.
set -euo pipefail

log() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
  log "openssh-server + client: present"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || die "/usr/sbin/sshd missing and apt-get is not available; install OpenSSH's server and client"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install openssh-server"
  sudo="sudo"
fi
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
  ours=1
  trap '$sudo rm -f "$policy"' EXIT
  printf '#!/bin/sh\n# hyperpunch scripts/install-sshd.sh: no service starts while it installs\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
fi
log "apt-get install openssh-server openssh-client (no service started${ours:+; temporary $policy})"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server openssh-client
[ -x /usr/sbin/sshd ] || die "apt-get finished but /usr/sbin/sshd is missing"
