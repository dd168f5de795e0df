#!/usr/bin/env bash
# `just bench`: hyperpunch and the pinned JS reference on the same work, in one run, on this machine.
#
# 1. JS: bench/js/append.js (a verbatim copy of the reference jsbench/append.js) with the pinned
#    hypercore from tests/interop/node_modules.
# 2. Rust: the release example `bench_hypercore` (transport-native/examples/bench_hypercore.rs) doing
#    the same appends/gets on hyperpunch::FileStorage, plus Rust-only figures (proofs, BLAKE2b,
#    Ed25519) and, each in a process of its own, the peak RSS while appending 1 GiB of 4 KiB blocks
#    to a core, and while writing the same data straight to FileStorage (the storage's share).
# 3. Replication (bench_replicate.rs; JS: bench/js/replicate.js, bench/js/replicate-tcp.js): two
#    peers in one process over an in-memory duplex; two processes over TCP loopback (1 GiB, CPU
#    seconds, peak RSS of the reader); Rust and JS serving and reading each other over TCP; the
#    crypto ceiling.
# 4. UDX (bench_udx.rs; JS: bench/js/udx.js, bench/js/tcp.js, bench/js/udx-peer.js): one stream
#    over loopback against udx-native and TCP, eight streams, CPU per GiB, and a run between two
#    network namespaces over a veth pair with netem (20 ms RTT, 1% loss) when the kernel has
#    netem; without it, the same delay and loss come from a user-space relay, and say so.
# 5. DHT (bench/dht.sh: bench_dht.rs against `hyperpunch dht bootstrap` and bench/js/dht-node.js):
#    LOOKUPs answered by one node per second and per CPU second, RSS at 10,000 announcements.
# 5'. Connecting by public key (bench/connect.sh: bench_connect.rs and bench/js/connect.js on a
#     20-node loopback testnet): whole-process and in-process connect-to-first-echo times,
#     throughput right after a connect, hyperswarm join to connection.
# 5''. UDX between two processes (bench/udx-cat.sh): `hyperpunch udx cat` file to `udx cat`
#     against udx-native send/recv processes (bench/js/udx-peer.js), retransmit rate.
# 5a. NAT matrix (bench/nat.sh on tests/nat/lab.sh, root only): open/consistent/random NATs on each
#     side in network namespaces, JS-JS, hyperpunch-hyperpunch and both mixes, connect times.
# 5b. Hyperbee (bench/bee.sh): puts one at a time and batched, gets, scans, ranges in one process
#    (bench_bee.rs vs bench/js/bee.js), and `hyperpunch bee batch` / `bee list` as whole processes
#    against bench/js/bee-cli.js.
# 5c. Hyperdrive (bench/drive.sh): `hyperpunch drive mirror` / `ls` / `serve` + `fetch` as whole
#    processes against bench/js/drive-cli.js (hyperdrive + mirror-drive + localdrive + corestore).
# 5d. hypershell (bench/shell.sh): 64 MiB copied up and down with `hyperpunch shell copy` and JS
#    hypershell-copy against `hyperpunch shell server` and JS hypershell-server, whole processes.
# 5d'. hyperssh (bench/ssh.sh): 64 MiB read and written through one SSH session by `hyperpunch ssh`
#     and JS hyperssh against `hyperpunch ssh server` and JS hypertele-server (the same sshd),
#     whole processes, with plain ssh to the sshd as the floor.
# 5f. Autobase (bench/autobase.sh): appends linearized per second with 1, 3 and 10 writers and a
#     new reader catching up on 100k indexed entries, in one process each side (bench_autobase.rs
#     vs bench/js/autobase.js on JS autobase 7.28.1).
# 5e. Whole processes (bench/cli.sh): `hyperpunch core fetch` of 100 MiB in 64 KiB blocks from
#    `hyperpunch core serve --tcp` on loopback, spawn to exit, against JS serve + JS fetch
#    processes (bench/js/replicate-tcp.js) timed from spawn to exit and inside the process.
# 5g. The browser (bench/relay.sh): a 64 MiB core from a native peer to a page (headless
#     Chromium, wasm, IndexedDB) through `hyperpunch relay --ws`, against the JS dht-relay 0.4.3
#     client with JS hypercore on the same path; the JS relay; direct connections; idle sessions
#     and streams one relay holds, and its memory.
# 6. Prints the tables (JS, Rust, Rust/JS computed from the figures of this run) to stdout and
#    writes them to bench/latest.md and BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/lib.sh # wait_for (and bench_build_hyperpunch)
modules="$root/tests/interop/node_modules"
if [ ! -f "$modules/hypercore/package.json" ]; then
  echo "error: the JS reference is not installed ($modules/hypercore is missing): run \`npm ci --prefix tests/interop\` (or \`just setup\`)" >&2
  exit 1
fi

tmp=$(mktemp -d)
pids=()
ns_a=hpbench-a
ns_b=hpbench-b
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$tmp" /tmp/hp-jsbench
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building the Rust benchmarks (release)" >&2
cargo build --release --locked -q -p hyperpunch --example bench_hypercore --example bench_replicate --example bench_udx
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples/bench_hypercore"
rbin="$target_dir/release/examples/bench_replicate"
ubin="$target_dir/release/examples/bench_udx"
js() { (cd "$root/tests/interop" && NODE_PATH="$modules" node "$@"); }

# The head-to-head comparisons run $best times, JS and Rust interleaved; the tables keep the best
# of them (highest rate, lowest CPU/storage time), which damps the noise of a shared machine (the
# JS one-at-a-time append alone was seen at 4.5k and 10.5k blocks/s minutes apart).
best=3
: >"$tmp/js.txt"
: >"$tmp/rust.txt"
for i in $(seq 1 "$best"); do
  echo "==> JS reference: bench/js/append.js ($i/$best)" >&2
  js "$root/bench/js/append.js" | tee -a "$tmp/js.txt" >&2
  echo "==> hyperpunch: bench_hypercore compare ($i/$best)" >&2
  "$bin" compare | tee -a "$tmp/rust.txt" >&2
done
echo "==> hyperpunch: bench_hypercore rust-only" >&2
"$bin" rust-only | tee -a "$tmp/rust.txt" >&2
echo "==> hyperpunch: bench_hypercore rss (1 GiB of 4 KiB blocks, own process)" >&2
"$bin" rss | tee -a "$tmp/rust.txt" >&2
echo "==> hyperpunch: bench_hypercore rss-raw (the same writes straight to FileStorage, own process)" >&2
"$bin" rss-raw | tee -a "$tmp/rust.txt" >&2

# ---- replication (issue 3) ----
for i in $(seq 1 "$best"); do
  echo "==> JS reference: bench/js/replicate.js ($i/$best)" >&2
  js "$root/bench/js/replicate.js" | tee -a "$tmp/js.txt" >&2
  echo "==> hyperpunch: bench_replicate compare / compare-1t / compare-mem ($i/$best)" >&2
  "$rbin" compare | tee -a "$tmp/rust.txt" >&2
  "$rbin" compare-1t | tee -a "$tmp/rust.txt" >&2
  "$rbin" compare-mem | tee -a "$tmp/rust.txt" >&2
done
echo "==> hyperpunch: bench_replicate ceiling" >&2
"$rbin" ceiling | tee -a "$tmp/rust.txt" >&2
echo "==> hyperpunch: two processes over TCP loopback, 1 GiB in 64 KiB blocks" >&2
"$rbin" tcp tcp1g 1024 | tee -a "$tmp/rust.txt" >&2
# Who serves and who reads, 256 MiB in 64 KiB blocks (4096 blocks) over TCP loopback:
# rr = Rust to Rust, jr = JS serves and Rust reads, rj = Rust serves and JS reads, jj = JS to JS.
x_blocks=4096
echo "==> Rust serves, Rust reads (256 MiB)" >&2
"$rbin" tcp rr 256 | tee -a "$tmp/rust.txt" >&2
echo "==> JS serves, Rust reads (256 MiB)" >&2
js "$root/bench/js/replicate-tcp.js" serve jr "$x_blocks" >"$tmp/jr-serve.txt" &
pids+=($!)
line=$(wait_for "$tmp/jr-serve.txt" '^listening ')
set -- $line
"$rbin" fetch jr "$tmp/jr-dst" "$3" "127.0.0.1:$2" "$x_blocks" | tee -a "$tmp/rust.txt" >&2
wait "${pids[-1]}"
unset 'pids[-1]'
grep '^BENCH' "$tmp/jr-serve.txt" | tee -a "$tmp/js.txt" >&2
echo "==> Rust serves, JS reads (256 MiB)" >&2
key=$("$rbin" make "$tmp/rj-src" 256 | sed -n 's/^key //p')
"$rbin" serve rj "$tmp/rj-src" >"$tmp/rj-serve.txt" &
pids+=($!)
line=$(wait_for "$tmp/rj-serve.txt" '^listening ')
set -- $line
port=${2##*:}
js "$root/bench/js/replicate-tcp.js" fetch rj "$port" "$key" "$x_blocks" | tee -a "$tmp/js.txt" >&2
wait "${pids[-1]}"
unset 'pids[-1]'
grep '^BENCH' "$tmp/rj-serve.txt" | tee -a "$tmp/rust.txt" >&2
echo "==> JS serves, JS reads (256 MiB)" >&2
js "$root/bench/js/replicate-tcp.js" serve jj "$x_blocks" >"$tmp/jj-serve.txt" &
pids+=($!)
line=$(wait_for "$tmp/jj-serve.txt" '^listening ')
set -- $line
js "$root/bench/js/replicate-tcp.js" fetch jj "$2" "$3" "$x_blocks" | tee -a "$tmp/js.txt" >&2
wait "${pids[-1]}"
unset 'pids[-1]'
grep '^BENCH' "$tmp/jj-serve.txt" | tee -a "$tmp/js.txt" >&2
rm -rf "$tmp/jr-dst" "$tmp/rj-src"

# ---- UDX (issue 4) ----
for i in $(seq 1 "$best"); do
  echo "==> JS reference: bench/js/udx.js, bench/js/tcp.js ($i/$best)" >&2
  js "$root/bench/js/udx.js" | tee -a "$tmp/js.txt" >&2
  js "$root/bench/js/tcp.js" | tee -a "$tmp/js.txt" >&2
  echo "==> hyperpunch: bench_udx one / tcp (256 MiB, $i/$best)" >&2
  for w in one tcp; do "$ubin" "$w" 256 | tee -a "$tmp/rust.txt" >&2; done
done
echo "==> hyperpunch: bench_udx eight / split (256 MiB)" >&2
for w in eight split; do "$ubin" "$w" 256 | tee -a "$tmp/rust.txt" >&2; done

# Sender and receiver in processes of their own, Rust and udx-native in turn: MIB MiB from
# $1 (sender IP:PORT) to $2 (receiver IP:PORT); $3/$4: the addresses each side sends to; $5/$6:
# command prefixes (network namespaces) of the sender and the receiver; $7: tag suffix.
udx_pair() {
  local s=$1 r=$2 s_to=$3 r_to=$4 s_ns=$5 r_ns=$6 sfx=$7 mib=64
  $r_ns "$ubin" recv "rust_$sfx" "$r" "$r_to" "$mib" >"$tmp/recv.txt" &
  local rp=$!
  wait_for "$tmp/recv.txt" '^ready' >/dev/null
  $s_ns "$ubin" send "$s" "$s_to" "$mib"
  wait "$rp"
  grep -v '^ready' "$tmp/recv.txt" | tee -a "$tmp/rust.txt" >&2
  (cd "$root/tests/interop" && NODE_PATH="$modules" $r_ns node "$root/bench/js/udx-peer.js" recv "js_$sfx" \
    "${r%:*}" "${r##*:}" "${r_to%:*}" "${r_to##*:}" "$mib") >"$tmp/recv.txt" &
  rp=$!
  wait_for "$tmp/recv.txt" '^ready' >/dev/null
  (cd "$root/tests/interop" && NODE_PATH="$modules" $s_ns node "$root/bench/js/udx-peer.js" send \
    "${s%:*}" "${s##*:}" "${s_to%:*}" "${s_to##*:}" "$mib")
  wait "$rp"
  grep -v '^ready' "$tmp/recv.txt" | tee -a "$tmp/js.txt" >&2
}

echo "==> UDX between two network namespaces over a veth pair" >&2
netem=no
netns_note=""
# Namespaces left over by an interrupted run would make `ip netns add` fail.
ip netns del "$ns_a" 2>/dev/null || true
ip netns del "$ns_b" 2>/dev/null || true
if ip netns add "$ns_a" 2>"$tmp/ns.err" && ip netns add "$ns_b" 2>>"$tmp/ns.err" &&
  ip link add hpb-va netns "$ns_a" type veth peer name hpb-vb netns "$ns_b" 2>>"$tmp/ns.err"; then
  ip -n "$ns_a" addr add 10.201.0.1/24 dev hpb-va
  ip -n "$ns_b" addr add 10.201.0.2/24 dev hpb-vb
  ip -n "$ns_a" link set hpb-va up
  ip -n "$ns_b" link set hpb-vb up
  # 10 ms and 1% loss on each side's egress: 20 ms RTT, 1% of data and of ACKs lost.
  if ip netns exec "$ns_a" tc qdisc add dev hpb-va root netem delay 10ms loss 1% 2>"$tmp/netem.err" &&
    ip netns exec "$ns_b" tc qdisc add dev hpb-vb root netem delay 10ms loss 1% 2>>"$tmp/netem.err"; then
    netem=yes
  else
    netns_note="netem is unavailable in this kernel ($(head -1 "$tmp/netem.err"); CONFIG_NET_SCH_NETEM is not set), so the veth run has no delay or loss"
    echo "note: $netns_note" >&2
  fi
  udx_pair 10.201.0.1:40001 10.201.0.2:40002 10.201.0.2:40002 10.201.0.1:40001 \
    "ip netns exec $ns_a" "ip netns exec $ns_b" veth
  ip netns del "$ns_a"
  ip netns del "$ns_b"
else
  netns_note="network namespaces are unavailable ($(head -1 "$tmp/ns.err")): no veth run"
  echo "note: $netns_note" >&2
fi
if [ "$netem" = no ]; then
  echo "==> UDX through a user-space relay on loopback: 10 ms each way, 1% loss each way (no netem)" >&2
  "$ubin" relay 127.0.0.1:40011 127.0.0.1:40012 127.0.0.1:40001 127.0.0.1:40002 10 10 1 >"$tmp/relay.txt" &
  pids+=($!)
  wait_for "$tmp/relay.txt" '^relaying' >/dev/null
  udx_pair 127.0.0.1:40001 127.0.0.1:40002 127.0.0.1:40011 127.0.0.1:40012 "" "" relay
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# "key value" lines -> one line per key: a figure measured more than once keeps its best value
# (the highest of a rate, *_mb_s / *_blocks_s / *_gets_s, the lowest of anything else).
best_of() {
  awk '{
    rate = ($1 ~ /_(mb_s|blocks_s|gets_s)$/)
    if (!($1 in v)) { v[$1] = $2; order[++n] = $1 }
    else if (rate ? $2 + 0 > v[$1] + 0 : $2 + 0 < v[$1] + 0) v[$1] = $2
  } END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }'
}

# JS lines -> "key value" (same keys as the Rust BENCH lines).
awk '
  /^append size=/ {
    split($2, s, "="); split($3, n, "="); b = $4; sub(/^batch=/, "", b); sub(/:$/, "", b)
    tag = s[2] "_" n[2] "_" b
    for (i = 1; i <= NF; i++) {
      if ($i == "blocks/s,") print "append_" tag "_blocks_s", $(i - 1)
      if ($i == "MB/s") print "append_" tag "_mb_s", $(i - 1)
    }
  }
  /^ *get all:/ { for (i = 1; i <= NF; i++) if ($i == "gets/s") print "get_" tag "_gets_s", $(i - 1) }
  /^replicate \(secret-stream, in-process\)/ {
    for (i = 1; i <= NF; i++) { if ($i == "MB/s,") print "repl_inproc_mb_s", $(i - 1); if ($i == "blocks/s") print "repl_inproc_blocks_s", $(i - 1) }
  }
  /^udx loopback/ { for (i = 1; i <= NF; i++) if ($i == "MB/s") print "udx_one_mb_s", $(i - 1) }
  /^tcp loopback/ { for (i = 1; i <= NF; i++) if ($i == "MB/s") print "tcp_mb_s", $(i - 1) }
  $1 == "BENCH" { print $2, $3 }
' "$tmp/js.txt" | best_of >"$tmp/js.kv"
awk '$1 == "BENCH" { print $2, $3 }' "$tmp/rust.txt" | best_of >"$tmp/rust.kv"

val() { awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }' || printf 'missing'; }
ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v j="$1" -v r="$2" 'BEGIN { if (j > 0) printf "%.2f×", r / j; else printf "n/a" }'; else printf 'n/a'; fi
}

{
  echo "# hyperpunch vs JS reference (hypercore $(node -p "require('$modules/hypercore/package.json').version"))"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), node $(node --version), $(rustc --version | cut -d' ' -f1-2)."
  echo "Both on the native file backend in \`${TMPDIR:-/tmp}\` (JS: hypercore-storage/RocksDB, Rust: \`hyperpunch::FileStorage\`/fjall),"
  echo "same process work as \`bench/js/append.js\`; best of $best runs each, JS and Rust interleaved; the ratio is Rust/JS of the two bests (higher is better for Rust)."
  avx512=no; grep -qw avx512f /proc/cpuinfo && avx512=yes
  echo "The Rust benchmarks run on mimalloc (the \`hyperpunch\` binary's allocator, cargo feature \`mimalloc\`; the library sets none)."
  echo "AVX-512F on this CPU: $avx512 (hyperpunch hashes leaves and generates the secret-stream keystream in AVX-512 lanes when it is there, AVX2 otherwise)."
  echo
  echo "| work | unit | JS | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  while IFS='|' read -r key label unit; do
    j=$(val "$tmp/js.kv" "$key"); r=$(val "$tmp/rust.kv" "$key")
    echo "| $label | $unit | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
  done <<'EOF'
append_64_100000_1000_blocks_s|append 100k × 64 B, batches of 1000|blocks/s
get_64_100000_1000_gets_s|get every block (100k × 64 B)|gets/s
append_4096_20000_100_mb_s|append 20k × 4 KiB, batches of 100|MB/s
get_4096_20000_100_gets_s|get every block (20k × 4 KiB)|gets/s
append_64_5000_1_blocks_s|append 5k × 64 B, one at a time|blocks/s
get_64_5000_1_gets_s|get every block (5k × 64 B)|gets/s
EOF
  echo
  echo "Rust only:"
  echo
  echo "| work | unit | Rust |"
  echo "|---|---|---:|"
  while IFS='|' read -r key label unit; do
    echo "| $label | $unit | $(fmt "$(val "$tmp/rust.kv" "$key")") |"
  done <<'EOF'
proof_gen_per_s|proof generation, random block + upgrade, 1M-block core|proofs/s
proof_verify_per_s|proof verification (fresh reader), same proofs|proofs/s
blake2b_64_mb_s|BLAKE2b-256, 64 B inputs|MB/s
blake2b_4096_mb_s|BLAKE2b-256, 4 KiB inputs|MB/s
blake2b_leaves_4096_mb_s|BLAKE2b-256 leaf hashes of 4 KiB blocks, batches of 100 (8 at a time in AVX-512 lanes)|MB/s
ed25519_sign_per_s|Ed25519 sign (112-byte signable)|signs/s
ed25519_verify_per_s|Ed25519 verify (112-byte signable)|verifies/s
rss_append_mb_s|append 1 GiB of 4 KiB blocks, batches of 256|MB/s
rss_length|  length after the 1 GiB append|blocks
rss_vmhwm_before_kib|  VmHWM before appending|KiB
rss_vmhwm_quarter_kib|  VmHWM after 256 MiB|KiB
rss_vmhwm_after_kib|  VmHWM after 1 GiB|KiB
rss_raw_vmhwm_quarter_kib|  same writes straight to FileStorage (no hypercore): VmHWM after 256 MiB|KiB
rss_raw_vmhwm_after_kib|  same writes straight to FileStorage (no hypercore): VmHWM after 1 GiB|KiB
EOF
  q=$(val "$tmp/rust.kv" rss_vmhwm_quarter_kib); a=$(val "$tmp/rust.kv" rss_vmhwm_after_kib)
  if [ -n "$q" ] && [ -n "$a" ]; then
    echo
    awk -v q="$q" -v a="$a" 'BEGIN { printf "Peak RSS of the 1 GiB append grew by %.0f MiB between 256 MiB and 1 GiB appended (flat would be about 0).\n", (a - q) / 1024 }'
  fi
} | tee "$tmp/table.md"
# Figures of this run for the issue 3 and 4 sections; `any` looks in the Rust figures, then the JS ones.
any() { local v; v=$(val "$tmp/rust.kv" "$1"); [ -n "$v" ] || v=$(val "$tmp/js.kv" "$1"); printf '%s' "$v"; }
pct() {
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else printf "n/a" }'; else printf 'n/a'; fi
}
row() { # key label unit: a JS | Rust | Rust/JS row
  local j r
  j=$(val "$tmp/js.kv" "$1"); r=$(val "$tmp/rust.kv" "$1")
  echo "| $2 | $3 | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
}
{
  echo
  echo "## Replication (hypercore over secret-stream)"
  echo
  echo "Best of $best runs, JS and Rust interleaved (the ratio compares the two bests)."
  echo
  echo "| work | unit | JS | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  row repl_inproc_mb_s "two peers in one process, in-memory duplex, 25k × 4 KiB (\`bench/js/replicate.js\`)" MB/s
  row repl_inproc_blocks_s "  the same" blocks/s
  j=$(val "$tmp/js.kv" repl_inproc_mb_s); r=$(val "$tmp/rust.kv" repl_inproc_1t_mb_s)
  echo "| the same with both Rust peers on one thread (\`compare-1t\`) | MB/s | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
  echo
  echo "Rust runs on tokio's default multi-thread runtime (\`#[tokio::main]\`; 2 workers here): each"
  echo "peer's connection is a task, whose messages are verified and stored by a second task, so the"
  echo "reader decrypts and verifies in parallel. JS runs both peers on its one event loop (RocksDB"
  echo "and libuv use threads of their own). The one-thread row is the same work on a current-thread runtime."
  echo
  echo "Rust only (where the in-process time goes, and two processes over TCP loopback):"
  echo
  echo "| work | unit | Rust |"
  echo "|---|---|---:|"
  while IFS='|' read -r key label unit; do
    echo "| $label | $unit | $(fmt "$(val "$tmp/rust.kv" "$key")") |"
  done <<'EOF2'
repl_inproc_cpu_s|in-process runs above: CPU time, all threads (least of the runs)|s
repl_inproc_1t_cpu_s|  the same with both peers on one thread|s
repl_inproc_serve_storage_read_s|  time in the writer's FileStorage reads (least of the runs)|s
repl_inproc_fetch_storage_read_s|  time in the reader's FileStorage reads (least of the runs)|s
repl_inproc_fetch_storage_write_s|  time in the reader's FileStorage writes (least of the runs)|s
repl_inproc_mem_mb_s|the same on MemoryStorage (both peers)|MB/s
tcp1g_mb_s|two processes over TCP loopback, 1 GiB in 64 KiB blocks|MB/s
tcp1g_reader_cpu_s_per_gib|  reader CPU per GiB|s
tcp1g_server_cpu_s_per_gib|  server CPU per GiB|s
tcp1g_reader_storage_write_s|  time in the reader's FileStorage writes|s
tcp1g_reader_vmhwm_start_kib|  reader peak RSS before connecting|KiB
tcp1g_reader_vmhwm_quarter_kib|  reader peak RSS after 256 MiB|KiB
tcp1g_reader_vmhwm_end_kib|  reader peak RSS after 1 GiB|KiB
ceiling_encrypt_mb_s|ceiling: secret-stream encrypt, 64 KiB messages, one thread|MB/s
ceiling_decrypt_mb_s|ceiling: secret-stream decrypt, 64 KiB messages, one thread|MB/s
ceiling_blake2b_mb_s|ceiling: BLAKE2b-256 leaf hashes of 64 KiB blocks, 8 at a time as the reader batches them, one thread|MB/s
ceiling_reader_mb_s|ceiling: reader (decrypt + hash every block), one thread|MB/s
ceiling_cpu_s_per_gib|ceiling: CPU per GiB, both sides (encrypt + decrypt + hash)|s
EOF2
  c=$(val "$tmp/rust.kv" ceiling_reader_mb_s); t=$(val "$tmp/rust.kv" tcp1g_mb_s)
  q=$(val "$tmp/rust.kv" tcp1g_reader_vmhwm_quarter_kib); a=$(val "$tmp/rust.kv" tcp1g_reader_vmhwm_end_kib)
  echo
  echo "The 1 GiB TCP run reached $(pct "$t" "$c") of the reader's crypto ceiling."
  if [ -n "$q" ] && [ -n "$a" ]; then
    awk -v q="$q" -v a="$a" 'BEGIN { printf "The reader'"'"'s peak RSS grew by %.0f MiB between 256 MiB and 1 GiB downloaded (bounded: about 0).\n", (a - q) / 1024 }'
  fi
  echo
  echo "Who serves and who reads: 256 MiB in 64 KiB blocks over TCP loopback, secret-stream, each side a"
  echo "process of its own (MB/s measured by the reader; CPU seconds of each process while replicating):"
  echo
  echo "| server → reader | MB/s | reader CPU s | server CPU s |"
  echo "|---|---:|---:|---:|"
  while IFS='|' read -r tag label; do
    echo "| $label | $(fmt "$(any "${tag}_mb_s")") | $(fmt "$(any "${tag}_reader_cpu_s")") | $(fmt "$(any "${tag}_server_cpu_s")") |"
  done <<'EOF2'
rr|Rust → Rust
jr|JS → Rust
rj|Rust → JS
jj|JS → JS
EOF2
  echo
  echo "## UDX"
  echo
  echo "The first two rows: best of $best runs, JS and Rust interleaved."
  echo
  echo "| work | unit | udx-native / node | Rust | Rust/JS |"
  echo "|---|---|---:|---:|---:|"
  row udx_one_mb_s "one stream, 256 MiB over loopback, both ends on one thread (\`bench/js/udx.js\`)" MB/s
  row tcp_mb_s "TCP on loopback, 256 MiB (\`bench/js/tcp.js\`; Rust: tokio): the ceiling" MB/s
  echo "| UDX as a share of TCP on loopback | | $(pct "$(val "$tmp/js.kv" udx_one_mb_s)" "$(val "$tmp/js.kv" tcp_mb_s)") | $(pct "$(val "$tmp/rust.kv" udx_one_mb_s)" "$(val "$tmp/rust.kv" tcp_mb_s)") | |"
  if [ "$netem" = yes ]; then
    j=$(val "$tmp/js.kv" js_veth_mb_s); r=$(val "$tmp/rust.kv" rust_veth_mb_s)
    echo "| veth between two network namespaces, netem 20 ms RTT and 1% loss, 64 MiB | MB/s | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
  else
    j=$(val "$tmp/js.kv" js_veth_mb_s); r=$(val "$tmp/rust.kv" rust_veth_mb_s)
    echo "| veth between two network namespaces, no impairment (no netem), 64 MiB | MB/s | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
    j=$(val "$tmp/js.kv" js_relay_mb_s); r=$(val "$tmp/rust.kv" rust_relay_mb_s)
    echo "| user-space relay on loopback: 20 ms RTT, 1% loss each way, 64 MiB | MB/s | $(fmt "$j") | $(fmt "$r") | $(ratio "$j" "$r") |"
  fi
  echo
  echo "Rust only:"
  echo
  echo "| work | unit | Rust |"
  echo "|---|---|---:|"
  while IFS='|' read -r key label unit; do
    echo "| $label | $unit | $(fmt "$(val "$tmp/rust.kv" "$key")") |"
  done <<'EOF2'
udx_one_cpu_s_per_gib|one stream: CPU per GiB, sender and receiver on one thread|s
tcp_cpu_s_per_gib|TCP on loopback: CPU per GiB, both ends|s
udx_split_mb_s|one stream, sender and receiver on a thread each|MB/s
udx_send_cpu_s_per_gib|  CPU per GiB sent (sender thread)|s
udx_recv_cpu_s_per_gib|  CPU per GiB received (receiver thread)|s
udx_eight_mb_s|eight concurrent streams × 32 MiB on one socket pair: aggregate|MB/s
udx_eight_jain|  Jain's fairness index of the bytes received when the first stream finished (1 = equal)|index
udx_eight_first_ms|  first stream finished after|ms
udx_eight_last_ms|  last stream finished after|ms
udx_eight_cpu_s_per_gib|  CPU per GiB (both ends)|s
rust_relay_longest_stall_ms|user-space relay run (20 ms RTT, 1% loss): the longest wait of the receiver for its next bytes|ms
EOF2
  if [ -n "$netns_note" ]; then
    echo
    echo "Note: $netns_note; the 20 ms RTT / 1% loss figures come from \`bench_udx relay\`, a user-space relay"
    echo "that delays every datagram by 10 ms and drops 1% (seeded) in each direction."
  fi
  echo
  echo "Load average (1/5/15 min) before the run: $load_before; after: $load_after (2 CPUs shared with other work: wall-clock figures are noisy, CPU seconds less so)."
} | tee -a "$tmp/table.md"
# ---- DHT (issue 12) ----
bash "$root/bench/dht.sh" | tee -a "$tmp/table.md"
# ---- connecting by public key (issue 12): bench/connect.sh ----
bash "$root/bench/connect.sh" | tee -a "$tmp/table.md"
# ---- UDX between two processes as a user runs it (issue 12): bench/udx-cat.sh ----
bash "$root/bench/udx-cat.sh" | tee -a "$tmp/table.md"
# ---- the NAT matrix (issue 12): bench/nat.sh, root only (network namespaces) ----
bash "$root/bench/nat.sh" | tee -a "$tmp/table.md"
# ---- hyperbee (issue 13): bench/bee.sh, its own table (in-process and whole-process rows) ----
bash "$root/bench/bee.sh" "$tmp/bee.md"
{
  echo
  cat "$tmp/bee.md"
} | tee -a "$tmp/table.md"
# ---- hyperdrive (issue 13): bench/drive.sh, whole processes ----
bash "$root/bench/drive.sh" "$tmp/drive.md"
{
  echo
  cat "$tmp/drive.md"
} | tee -a "$tmp/table.md"
# ---- hypershell (issue 16): bench/shell.sh, copies as whole processes ----
{
  echo
  bash "$root/bench/shell.sh"
} | tee -a "$tmp/table.md"
# ---- hyperssh (issue 16): bench/ssh.sh, SSH sessions as whole processes ----
{
  echo
  bash "$root/bench/ssh.sh"
} | tee -a "$tmp/table.md"
# ---- autobase (issue 15): bench/autobase.sh, its own table ----
bash "$root/bench/autobase.sh" "$tmp/autobase.md"
{
  echo
  cat "$tmp/autobase.md"
} | tee -a "$tmp/table.md"
# ---- whole processes: core serve -> core fetch (issue 11): bench/cli.sh, its own table ----
bash "$root/bench/cli.sh" "$tmp/cli.md"
{
  echo
  cat "$tmp/cli.md"
} | tee -a "$tmp/table.md"
# ---- the browser through the relay (issue 14): bench/relay.sh, its own section ----
bash "$root/bench/relay.sh" "$tmp/relay.md"
{
  echo
  cat "$tmp/relay.md"
} | tee -a "$tmp/table.md"
cp "$tmp/table.md" "$root/bench/latest.md"
{
  echo "# Benchmarks"
  echo
  echo "hyperpunch against the pinned JS reference on the same machine, in the same run. Produced by"
  echo '`./run.sh bench` (= `just bench` = `bash bench/run.sh`), which rewrites this file; targets are from'
  echo "the foundation issue (append 64 B batched ≥ 10×, 4 KiB batched ≥ 5×, one at a time ≥ 5×, get ≥ 10×),"
  echo "replication (in-process duplex ≥ 10× the JS MB/s), UDX (one stream ≥ 3× udx-native's MB/s), hyperbee (≥ 20×), hyperdrive (≥ 5×), autobase (≥ 10×)"
  echo "whole processes (\`core fetch\` from \`core serve\` ≥ 5× JS's own in-process time)"
  echo "and the browser (a page through \`hyperpunch relay\` ≥ 3× the JS dht-relay client's MB/s on the same path);"
  echo "the DHT section compares one node's LOOKUP throughput and memory with a JS hyperdht node."
  echo
  cat "$tmp/table.md"
} > "$root/BENCHMARKS.md"
echo >&2
echo "(written to bench/latest.md and BENCHMARKS.md)" >&2
