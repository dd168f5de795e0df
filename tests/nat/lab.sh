#!/usr/bin/env bash
# The NAT lab: hyperdht connections between peers behind NATs, in network namespaces this script
# creates (and deletes, also on failure or Ctrl-C). Root only; iptables comes from apt.
#
#   bash tests/nat/lab.sh [--hp BIN] [--dht js|hp] [--timeout SECS] [--bulk MIB [--hold-direct]] [--out FILE] [--logs DIR [--pcap]] CELL...
#
# A CELL is SERVER/CLIENT:SNAT+CNAT[:relay|:fallback], e.g. `hp/js:consistent+random`:
#   SERVER, CLIENT  js (the pinned hyperdht via tests/nat/js-peer.js) or hp (`hyperpunch dht
#                   listen` / `dht connect`);
#   SNAT, CNAT      open (a public address, no NAT, no firewall), firewalled (a public address
#                   behind a stateful firewall, no NAT), consistent (a router doing
#                   MASQUERADE: the mapping keeps the port, so every destination sees one address)
#                   or random (MASQUERADE --random-fully: a new port for every destination);
#   :relay          the client pairs through a blind relay (`hyperpunch dht relay`, on the
#                   "internet"): `--relay-through KEY` (hp), `relayThrough` (js);
#   :fallback       the hp client gets the relay in HYPERPUNCH_RELAYS only: the automatic
#                   fallback when the punch fails (JS has none).
#   :early          (JS clients) the client connects at once, not after its DHT bootstrap: on
#                   a public address it sends its handshake as firewalled (UNKNOWN) and may
#                   learn it is OPEN before its punch round (reported as CNAT:early).
#
# The "internet" is one namespace with a bridge: 4 DHT nodes on 4 distinct addresses
# (198.18.0.1-4, port 49737; hyperdht's NAT sampling counts distinct hosts), the relay on
# 198.18.0.9, and each cell's two sides on 198.18.0.11 (server) and 198.18.0.12 (client),
# either the peer itself (open) or its router's WAN side, with the peer on a LAN behind it
# (10.1.0.2 / 10.2.0.2). 198.18.0.0/15 is the range set aside for network benchmarks (RFC 2544);
# none of it leaves the namespaces. Every router runs a conntrack firewall: the LAN may go out,
# only replies come in (ESTABLISHED,RELATED), and nothing unsolicited reaches the router itself
# (a packet to the router that was accepted would leave a conntrack entry that makes MASQUERADE
# give the peer's own punch a different port). Each cell gets fresh peer and router namespaces,
# so no conntrack state crosses cells; the DHT (--dht: JS nodes, the default, or hyperpunch
# nodes) and the relay live for the whole run.
#
# Per cell, the server sends "world", the client "hello"; a cell connects when each side got the
# other's line. With --bulk MIB each side follows its line with MIB/2 MiB of random bytes, then
# 64 KiB every 250 ms until its side printed `upgraded to direct` (a relayed stream moved to a
# punched path; bounded), then MIB/2 MiB more; a cell connects when each side received exactly
# what the other sent (sha256), and `how` becomes `relayed>direct` when both sides upgraded
# (`relayed>direct?` when only one did). --hold-direct (cells with a relay, both sides behind
# routers): each router drops what its LAN sends to the other side's address until both sides
# printed that they connected through the relay, so the relay always pairs them first and the
# punch, which goes on, opens the direct path only then (otherwise a lucky birthday punch can
# beat the relay, and there is nothing to upgrade). One TSV line per cell goes to stdout (and --out FILE):
#   server client snat cnat relay result how connect_ms process_ms detail
# relay: none | relay | fallback;
# result: ok | fail; how: direct | punched | relayed (as the client saw it) or -; connect_ms:
# from the client's connect call (after its DHT bootstrap) to the open stream; process_ms: the
# client process from start to exit, bootstrap included; detail: the error code on failure.
# Progress goes to stderr. Exit status: 0 when the lab ran (whatever the cells did), 77 when this
# machine cannot run it (not root, no network namespaces, no NAT in the kernel), 1 on other
# errors (iptables could not be installed, the JS reference or the binary is missing...).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
modules="$root/tests/interop/node_modules"

hp=""
dht_kind=js
timeout_s=20
out_file=""
logs=""
pcap=0
relay_nat=open
bulk=0
hold_direct=0
cells=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hp) hp=$2; shift 2 ;;
    --dht) dht_kind=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --out) out_file=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --pcap) pcap=1; shift ;;
    --relay-nat) relay_nat=$2; shift 2 ;;
    --bulk) bulk=$2; shift 2 ;;
    --hold-direct) hold_direct=1; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "lab.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    *) cells+=("$1"); shift ;;
  esac
done
[ ${#cells[@]} -gt 0 ] || { echo "lab.sh: no cell given (see --help)" >&2; exit 1; }

# --- can this machine run the lab? ---------------------------------------------------------
skip() { echo "lab.sh: SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root (network namespaces and iptables need root)"
command -v ip >/dev/null || skip "no \`ip\` command (iproute2)"
if ! command -v iptables >/dev/null; then
  echo "==> installing iptables (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq iptables >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq iptables >/dev/null 2>&1; }; } || {
    echo "lab.sh: iptables is missing and \`apt-get install iptables\` failed" >&2
    exit 1
  }
fi
P="hpn$$"
probe="${P}probe"
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace (no netns support)"
if ! ip netns exec "$probe" iptables -t nat -A POSTROUTING -j MASQUERADE --random-fully 2>/dev/null; then
  ip netns del "$probe"
  skip "iptables cannot MASQUERADE --random-fully in a namespace (no NAT support in this kernel)"
fi
ip netns del "$probe"

needs_js=0
needs_hp=0
for c in "${cells[@]}"; do
  case "$c" in js/*|*/js:*) needs_js=1 ;; esac
  case "$c" in hp/*|*/hp:*|*:relay|*:fallback) needs_hp=1 ;; esac
done
[ "$dht_kind" = hp ] && needs_hp=1
if [ $needs_js = 1 ] || [ "$dht_kind" = js ]; then
  [ -f "$modules/hyperdht/package.json" ] || {
    echo "lab.sh: the JS reference is not installed: run \`bash scripts/install-js-reference.sh\`" >&2
    exit 1
  }
fi
if [ $needs_hp = 1 ]; then
  [ -n "$hp" ] || hp="$root/target/debug/hyperpunch"
  [ -x "$hp" ] || { echo "lab.sh: no hyperpunch binary at $hp (build it, or pass --hp)" >&2; exit 1; }
fi

tmp=$(mktemp -d)
namespaces=()
cleanup() {
  local ns p
  for ns in "${namespaces[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  sleep 0.2
  for ns in "${namespaces[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inet="${P}i"
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
new_ns() {
  ip netns add "$1" || return 1
  namespaces+=("$1")
  ip -n "$1" link set lo up
}
rand_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for FILE PATTERN SECS: the first line of FILE matching PATTERN.
wait_for() {
  local i line
  for i in $(seq 1 $(($3 * 10))); do
    if line=$(grep -m1 -- "$2" "$1" 2>/dev/null); then
      printf '%s\n' "$line"
      return 0
    fi
    sleep 0.1
  done
  return 1
}
js_peer() { NODE_PATH="$modules" node "$here/js-peer.js" "$@"; }
# feed LINE ERRFILE SENTFILE: what an hp side sends (--bulk), also written to SENTFILE.
feed() {
  if [ "$bulk" = 0 ]; then printf '%s\n' "$1"; return; fi
  {
    printf '%s\n' "$1"
    head -c $((bulk * 524288)) /dev/urandom
    for _ in $(seq 1 120); do
      grep -q 'upgraded to direct' "$2" 2>/dev/null && break
      head -c 65536 /dev/urandom
      sleep 0.25
    done
    head -c $((bulk * 524288)) /dev/urandom
  } | tee "$3"
}

# --- the internet ------------------------------------------------------------------------
new_ns "$inet" || exit 1
ip -n "$inet" link add br0 type bridge
ip -n "$inet" link set br0 up
for a in 1 2 3 4; do ip -n "$inet" addr add "198.18.0.$a/16" dev br0; done
if [ $pcap = 1 ] && [ -n "$logs" ] && command -v tcpdump >/dev/null; then
  mkdir -p "$logs"
  in_ns "$inet" tcpdump -i br0 -n -U -w "$logs/internet.pcap" udp 2>/dev/null &
fi
boot="198.18.0.1:49737,198.18.0.2:49737,198.18.0.3:49737,198.18.0.4:49737"

echo "==> the internet: 4 DHT nodes ($dht_kind) on 198.18.0.1-4" >&2
if [ "$dht_kind" = js ]; then
  in_ns "$inet" bash -c "NODE_PATH='$modules' exec node '$here/js-peer.js' nodes '$boot'" 2>"$tmp/dht.log" &
  wait_for "$tmp/dht.log" '^ready' 30 >/dev/null || { echo "lab.sh: the JS DHT did not start:" >&2; cat "$tmp/dht.log" >&2; exit 1; }
else
  in_ns "$inet" "$hp" dht bootstrap --host 198.18.0.1 --port 49737 2>"$tmp/dht.log" &
  wait_for "$tmp/dht.log" 'bootstrap node' 30 >/dev/null || { echo "lab.sh: the hyperpunch DHT did not start:" >&2; cat "$tmp/dht.log" >&2; exit 1; }
  for a in 2 3 4; do
    in_ns "$inet" "$hp" dht node --bootstrap 198.18.0.1:49737 --host "198.18.0.$a" --port 49737 2>"$tmp/dht$a.log" &
  done
  for a in 2 3 4; do
    wait_for "$tmp/dht$a.log" '^node bound' 30 >/dev/null || { echo "lab.sh: DHT node $a did not start:" >&2; cat "$tmp/dht$a.log" >&2; exit 1; }
  done
fi

relay_key=""
start_relay() {
  [ -n "$relay_key" ] && return 0
  echo "==> a blind relay (hyperpunch dht relay) on 198.18.0.9 ($relay_nat)" >&2
  side r "$relay_nat" 9 10.9.0 || return 1
  in_ns "${P}r" "$hp" dht relay --seed "$(rand_hex)" --bootstrap "$boot" 2>"$tmp/relay.log" &
  local line
  line=$(wait_for "$tmp/relay.log" '^relay ' 30) || { echo "lab.sh: the relay did not start:" >&2; cat "$tmp/relay.log" >&2; return 1; }
  relay_key=${line#relay }
}

# side NAME NAT WAN_OCTET LAN_NET: builds the peer namespace ${P}NAME (and its router ${P}NAMEr).
side() {
  local name=$1 nat=$2 wan="198.18.0.$3" lan=$4 host="${P}$1" router="${P}$1r"
  new_ns "$host" || return 1
  if [ "$nat" = open ]; then
    ip -n "$inet" link add "v$name" type veth peer name eth0 netns "$host"
    ip -n "$inet" link set "v$name" master br0 up
    ip -n "$host" addr add "$wan/16" dev eth0
    ip -n "$host" link set eth0 up
    return 0
  fi
  if [ "$nat" = firewalled ]; then
    # A public address behind a stateful firewall, no NAT: only replies come in.
    ip -n "$inet" link add "v$name" type veth peer name eth0 netns "$host"
    ip -n "$inet" link set "v$name" master br0 up
    ip -n "$host" addr add "$wan/16" dev eth0
    ip -n "$host" link set eth0 up
    in_ns "$host" bash -c "
      set -e
      iptables -A INPUT -i lo -j ACCEPT
      iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      iptables -A INPUT -j DROP"
    return 0
  fi
  new_ns "$router" || return 1
  ip -n "$inet" link add "v$name" type veth peer name wan netns "$router"
  ip -n "$inet" link set "v$name" master br0 up
  ip -n "$router" addr add "$wan/16" dev wan
  ip -n "$router" link set wan up
  ip -n "$router" link add lan type veth peer name eth0 netns "$host"
  ip -n "$router" addr add "$lan.1/24" dev lan
  ip -n "$router" link set lan up
  ip -n "$host" addr add "$lan.2/24" dev eth0
  ip -n "$host" link set eth0 up
  ip -n "$host" route add default via "$lan.1"
  in_ns "$router" sysctl -qw net.ipv4.ip_forward=1
  local random=""
  [ "$nat" = random ] && random="--random-fully"
  in_ns "$router" bash -c "
    set -e
    iptables -t nat -A POSTROUTING -o wan -j MASQUERADE $random
    iptables -P FORWARD DROP
    iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    iptables -A FORWARD -i lan -o wan -j ACCEPT
    iptables -A INPUT -i wan -j DROP"
}

drop_side() {
  local ns
  # Namespaces are deleted asynchronously by the kernel: delete the bridge's end at once, so
  # that the next cell can take its name.
  ip -n "$inet" link del "v$1" 2>/dev/null
  for ns in "${P}$1" "${P}$1r"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}

[ -n "$out_file" ] && : >"$out_file"
emit() {
  printf '%s\n' "$1"
  [ -n "$out_file" ] && printf '%s\n' "$1" >>"$out_file"
  return 0
}

# run_cell SPEC
run_cell() {
  local spec=$1 impls nats simpl cimpl snat cnat relay=none early=""
  impls=${spec%%:*}
  nats=${spec#*:}
  case "$nats" in *:early) early=1; nats=${nats%:early} ;; esac
  case "$nats" in
    *:relay) relay=relay; nats=${nats%:relay} ;;
    *:fallback) relay=fallback; nats=${nats%:fallback} ;;
  esac
  simpl=${impls%/*}
  cimpl=${impls#*/}
  snat=${nats%+*}
  cnat=${nats#*+}
  local bad=""
  case "$simpl$cimpl" in jsjs|jshp|hpjs|hphp) ;; *) bad="implementations" ;; esac
  for n in "$snat" "$cnat"; do case "$n" in open|firewalled|consistent|random) ;; *) bad="NAT $n" ;; esac; done
  # An :early cell reports its client NAT as CNAT:early.
  [ -n "$early" ] && cnat="$cnat:early"
  [ "$relay" = fallback ] && [ "$cimpl" = js ] && bad="JS has no relay fallback"
  [ -n "$early" ] && [ "$cimpl" = hp ] && bad=":early is for JS clients"
  [ -n "$early" ] && [ "$relay" != none ] && bad=":early goes without a relay"
  if [ -n "$bad" ]; then
    echo "lab.sh: bad cell $spec ($bad); the form is SERVER/CLIENT:SNAT+CNAT[:relay|:fallback|:early]" >&2
    emit "$simpl	$cimpl	$snat	$cnat	$relay	fail	-	-	-	bad-cell"
    return
  fi
  echo "==> $spec" >&2
  local d="$tmp/cell"
  rm -rf "$d"
  mkdir -p "$d"
  if [ $relay != none ] && ! start_relay; then
    emit "$simpl	$cimpl	$snat	$cnat	$relay	fail	-	-	-	relay-did-not-start"
    return
  fi
  if ! side s "$snat" 11 10.1.0 || ! side c "${cnat%:early}" 12 10.2.0; then
    drop_side s
    drop_side c
    emit "$simpl	$cimpl	$snat	$cnat	$relay	fail	-	-	-	lab-setup-failed"
    return
  fi

  # The server.
  local seed spid bulk_js="" plimit=$((timeout_s + 2))
  # --bulk: the JS sides' flags (the file name follows), and room for the paced part.
  if [ "$bulk" != 0 ]; then
    bulk_js="--bulk-mib $bulk --sent $d/"
    plimit=$((timeout_s + 50))
  fi
  seed=$(rand_hex)
  if [ "$simpl" = hp ]; then
    (feed world "$d/server.err" "$d/server.sent" | in_ns "${P}s" "$hp" dht listen --seed "$seed" --bootstrap "$boot" --timeout "$timeout_s" -v \
      >"$d/server.out" 2>"$d/server.err") &
    spid=$!
  else
    (in_ns "${P}s" bash -c "NODE_PATH='$modules' exec node '$here/js-peer.js' listen --seed $seed --bootstrap $boot --message world $bulk_js${bulk_js:+server.sent}" \
      >"$d/server.out" 2>"$d/server.err") &
    spid=$!
  fi
  local line key
  if ! line=$(wait_for "$d/server.err" '^listening ' "$timeout_s"); then
    echo "    the server did not listen: $(tr '\n' ' ' <"$d/server.err")" >&2
    drop_side s
    drop_side c
    wait "$spid" 2>/dev/null
    emit "$simpl	$cimpl	$snat	$cnat	$relay	fail	-	-	-	server-did-not-listen"
    return
  fi
  key=${line#listening }

  # --hold-direct: no direct path until both sides are connected through the relay (bounded).
  # Only a consistent side's router holds its LAN's packets: a random side's birthday sockets
  # send once, and their mappings must exist for the consistent side's later probes to find.
  local holder="" holds=()
  if [ $hold_direct = 1 ] && [ $relay != none ]; then
    [ "$snat" = consistent ] && holds+=("${P}sr 198.18.0.12")
    [ "${cnat%:early}" = consistent ] && holds+=("${P}cr 198.18.0.11")
  fi
  if [ ${#holds[@]} -gt 0 ]; then
    local h hns hto
    for h in "${holds[@]}"; do
      read -r hns hto <<<"$h"
      in_ns "$hns" iptables -I FORWARD 1 -i lan -o wan -d "$hto" -j DROP
    done
    (
      wait_for "$d/client.err" 'via relayed' "$timeout_s" >/dev/null
      wait_for "$d/server.err" '^connected 198\.18\.0\.9:' "$timeout_s" >/dev/null
      for h in "${holds[@]}"; do
        read -r hns hto <<<"$h"
        in_ns "$hns" iptables -D FORWARD -i lan -o wan -d "$hto" -j DROP
      done
    ) &
    holder=$!
  fi

  # The client, bounded by timeout(1).
  local t0 t1 rc
  t0=$(now_ms)
  if [ "$cimpl" = hp ]; then
    local env_relays="HYPERPUNCH_RELAYS=" rt=()
    [ $relay = fallback ] && env_relays="HYPERPUNCH_RELAYS=$relay_key"
    [ $relay = relay ] && rt=(--relay-through "$relay_key")
    feed hello "$d/client.err" "$d/client.sent" | in_ns "${P}c" env "$env_relays" timeout -k 1 $plimit \
      "$hp" dht connect "$key" --bootstrap "$boot" --timeout "$timeout_s" -v "${rt[@]}" >"$d/client.out" 2>"$d/client.err"
    rc=$?
  else
    local rt=""
    [ $relay = relay ] && rt="--relay-through $relay_key --relay-host 198.18.0.9"
    in_ns "${P}c" env HP_LAB_CONNECT_EARLY="$early" bash -c "NODE_PATH='$modules' exec timeout -k 1 $plimit node '$here/js-peer.js' connect $key --bootstrap $boot --message hello $rt $bulk_js${bulk_js:+client.sent}" \
      >"$d/client.out" 2>"$d/client.err" </dev/null
    rc=$?
  fi
  t1=$(now_ms)
  [ -n "$holder" ] && wait "$holder" 2>/dev/null
  # The server ends once both sides ended; give it a moment to print what it got.
  for _ in $(seq 1 30); do
    grep -aq hello "$d/server.out" 2>/dev/null && break
    sleep 0.1
  done
  if [ "$bulk" != 0 ]; then
    # The server exits once both sides ended and its data was acknowledged.
    for _ in $(seq 1 100); do
      kill -0 "$spid" 2>/dev/null || break
      sleep 0.1
    done
  fi

  local result=fail how=- ms=- detail=""
  line=$(grep -m1 '^connected ' "$d/client.err")
  if [ -n "$line" ]; then
    how=$(sed -n 's/.* via \([a-z]*\).*/\1/p' <<<"$line")
    ms=$(sed -n 's/.* in \([0-9]*\) ms.*/\1/p' <<<"$line")
  fi
  local same=0
  if [ "$bulk" != 0 ]; then
    hash() { sha256sum <"$1" 2>/dev/null | cut -d' ' -f1; }
    [ -s "$d/server.sent" ] && [ -s "$d/client.sent" ] \
      && [ "$(hash "$d/client.out")" = "$(hash "$d/server.sent")" ] \
      && [ "$(hash "$d/server.out")" = "$(hash "$d/client.sent")" ] && same=1
    local ups=0
    grep -q '^upgraded to direct' "$d/client.err" && ups=$((ups + 1))
    grep -q '^upgraded to direct' "$d/server.err" && ups=$((ups + 1))
    [ $ups = 2 ] && how="$how>direct"
    [ $ups = 1 ] && how="$how>direct?"
  elif grep -qx world "$d/client.out" && grep -qx hello "$d/server.out"; then
    same=1
  fi
  if [ $rc = 0 ] && [ $same = 1 ]; then
    result=ok
  else
    detail=$(grep -m1 -oE '[A-Z][A-Z_]{5,}' "$d/client.err")
    [ -z "$detail" ] && [ $rc = 124 ] && detail=timeout
    [ -z "$detail" ] && detail="exit-$rc"
    [ -n "$line" ] && detail="$detail;data-not-exchanged"
    # A failed cell's last lines in full (ours run with -v): what a CI log keeps of a
    # flaky punch (a rare timeout of a birthday punch was seen with three lines only).
    echo "    client (last 25 lines of its stderr):" >&2
    tail -n 25 "$d/client.err" | sed 's/^/      /' >&2
    echo "    server (last 25 lines of its stderr):" >&2
    tail -n 25 "$d/server.err" | sed 's/^/      /' >&2
  fi
  [ -n "$how" ] || how=-
  [ -n "$ms" ] || ms=-
  echo "    $result ${how} ${ms} ms (process $((t1 - t0)) ms) $detail" >&2
  emit "$simpl	$cimpl	$snat	$cnat	$relay	$result	$how	$ms	$((t1 - t0))	${detail:--}"
  drop_side s
  drop_side c
  wait "$spid" 2>/dev/null
  if [ -n "$logs" ]; then
    mkdir -p "$logs"
    for f in "$d"/*; do cp "$f" "$logs/${spec//[\/:+]/_}.$(basename "$f")"; done
    cp "$tmp"/*.log "$logs/" 2>/dev/null
  fi
}

for c in "${cells[@]}"; do run_cell "$c"; done
exit 0
