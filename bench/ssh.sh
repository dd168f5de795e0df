#!/usr/bin/env bash
# hyperssh: `hyperpunch ssh` against the pinned JS hyperssh 5.0.4, in one run
# (`bash bench/ssh.sh [MiB]`, default 64). Prints a markdown section on stdout, progress on stderr.
#
# A loopback testnet (a `hyperpunch dht bootstrap` node and two `dht node`s, release), an OpenSSH
# sshd of the script's own on a free 127.0.0.1 port (`bash scripts/install-sshd.sh` installs it),
# exposed by `hyperpunch ssh server` and by JS `hypertele-server` (hyperssh's server side). Each
# client (`hyperpunch ssh KEY`, JS hyperssh; and plain ssh straight to sshd as the floor) reads a
# file of random bytes with `cat` and writes it back with `cat >`, every session a fresh process:
# the time is the whole command (joining the DHT, connecting by key, the SSH handshake and login,
# the transfer), best of 2. The copies are compared with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/lib.sh # wait_for (and bench_build_hyperpunch)
mib=${1:-64}
interop="$root/tests/interop"
if [ ! -f "$interop/node_modules/hyperssh/package.json" ]; then
  echo "error: the JS reference is not installed: run \`bash scripts/install-js-reference.sh\`" >&2
  exit 1
fi
[ -x /usr/sbin/sshd ] || { echo "error: /usr/sbin/sshd is missing: run \`bash scripts/install-sshd.sh\`" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "${HP:-}" ]; then
  hp=$HP # a binary built already (e.g. HP=target/debug/hyperpunch to try the script)
else
  echo "==> building hyperpunch (release)" >&2
  hp=$(bench_build_hyperpunch)
fi

free_port() { python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

port=$(free_port SOCK_DGRAM)
boot="127.0.0.1:$port"
"$hp" dht bootstrap --host 127.0.0.1 --port "$port" 2>"$tmp/boot.log" &
pids+=($!)
wait_for "$tmp/boot.log" 'bootstrap node' >/dev/null
for i in 1 2; do
  "$hp" dht node --bootstrap "$boot" --host 127.0.0.1 2>"$tmp/node$i.log" &
  pids+=($!)
  wait_for "$tmp/node$i.log" 'persistent, id' >/dev/null
done
net=(--bootstrap "$boot" --host 127.0.0.1)

# sshd: 127.0.0.1 only, logins with one generated key.
[ -d /run/sshd ] || mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
sshd_port=$(free_port SOCK_STREAM)
printf 'ListenAddress 127.0.0.1:%s\nHostKey %s\nAuthorizedKeysFile %s\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n' \
  "$sshd_port" "$tmp/host_key" "$tmp/authorized_keys" > "$tmp/sshd_config"
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
pids+=($!)
wait_for "$tmp/sshd.log" 'Server listening' >/dev/null
# JS hyperssh's ssh takes the key from an agent.
ssh-agent -D -a "$tmp/agent.sock" >"$tmp/agent.log" 2>&1 &
pids+=($!)
wait_for "$tmp/agent.log" 'SSH_AUTH_SOCK' >/dev/null
SSH_AUTH_SOCK="$tmp/agent.sock" ssh-add -q "$tmp/client_key"
user=$(id -un)

"$hp" ssh server --seed "$(printf 'b5%.0s' $(seq 32))" -l "$sshd_port" "${net[@]}" >"$tmp/rs.log" 2>&1 &
pids+=($!)
rust_key=$(wait_for "$tmp/rs.log" '^hyperssh: ' | awk '{print $NF}')
(cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" exec node tool-run.js hypertele/server.js --seed "$(printf 'c5%.0s' $(seq 32))" -l "$sshd_port") >"$tmp/js.log" 2>&1 &
pids+=($!)
js_key=$(wait_for "$tmp/js.log" '^hypertele: ' | awk '{print $NF}')

echo "==> $mib MiB of random bytes" >&2
head -c $((mib * 1024 * 1024)) /dev/urandom > "$tmp/src.bin"

ssh_opts=(-F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o "UserKnownHostsFile=$tmp/known_hosts" -o StrictHostKeyChecking=no)
# session CLIENT KEY IN OUT COMMAND: one ssh session (stdin IN, stdout OUT); prints its seconds.
session() {
  local start end
  start=$(date +%s.%N)
  case "$1" in
    rust)
      "$hp" ssh "$2" -u "$user" --ssh-key "$tmp/client_key" --ssh-arg=-F --ssh-arg=/dev/null \
        -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o "UserKnownHostsFile=$tmp/known_hosts" \
        "${net[@]}" -e "$5" <"$3" >"$4" 2>"$tmp/session.log" ;;
    js)
      (cd "$interop" && HYPERPUNCH_TEST_BOOTSTRAP="$boot" SSH_AUTH_SOCK="$tmp/agent.sock" \
        node tool-run.js hyperssh/client.js -s "$2" -u "$user" -e "$5") <"$3" >"$4" 2>"$tmp/session.log" ;;
    direct)
      ssh "${ssh_opts[@]}" -i "$tmp/client_key" -p "$sshd_port" "$user@127.0.0.1" "$5" <"$3" >"$4" 2>"$tmp/session.log" ;;
  esac || { echo "error: $1 session ($5) failed:" >&2; cat "$tmp/session.log" >&2; return 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
best() {
  local a b
  a=$(session "$@") || exit 1
  b=$(session "$@") || exit 1
  if (($(echo "$a < $b" | bc))); then echo "$a"; else echo "$b"; fi
}
mb_s() { echo "scale=1; $mib * 1.048576 / $1" | bc; }

rows=()
for pair in rust:rust rust:js js:rust js:js direct:-; do
  client=${pair%%:*}
  server=${pair#*:}
  case "$server" in rust) key=$rust_key ;; js) key=$js_key ;; *) key=- ;; esac
  echo "==> $client client, $server server: download" >&2
  down=$(best "$client" "$key" /dev/null "$tmp/down.bin" "cat $tmp/src.bin") || exit 1
  cmp -s "$tmp/src.bin" "$tmp/down.bin" || { echo "error: the download differs" >&2; exit 1; }
  echo "==> $client client, $server server: upload" >&2
  up=$(best "$client" "$key" "$tmp/src.bin" /dev/null "cat > $tmp/up.bin") || exit 1
  cmp -s "$tmp/src.bin" "$tmp/up.bin" || { echo "error: the upload differs" >&2; exit 1; }
  label_c=$client; label_s=$server
  [ "$client" = direct ] && { label_c="plain ssh"; label_s="sshd (no DHT)"; }
  [ "$server" = js ] && label_s="js (hypertele-server)"
  [ "$client" = js ] && label_c="js (hyperssh)"
  rows+=("| $label_c | $label_s | $(printf '%.2f' "$down") s ($(mb_s "$down") MB/s) | $(printf '%.2f' "$up") s ($(mb_s "$up") MB/s) |")
done

echo "## hyperssh sessions (hyperssh 5.0.4, hypertele 1.1.4)"
echo
echo "\`bash bench/ssh.sh $mib\`: a $mib MiB file read (\`cat\`) and written (\`cat >\`) through one SSH session"
echo "to the same OpenSSH sshd on a loopback testnet, every session a fresh process (joining the DHT,"
echo "connecting by key, the SSH handshake and login included), best of 2. Load average before: $load_before."
echo
echo "| client | server | download | upload |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
