#!/usr/bin/env bash
# The NAT matrix with times (called by bench/run.sh, or standalone: `bash bench/nat.sh`): every
# pair of open / consistent / random NATs (server side × client side), random + random again with
# a blind relay offered, for JS-JS, hyperpunch-hyperpunch and both mixes, in the network
# namespaces of tests/nat/lab.sh (root only; without root it prints why and no table). Each cell
# runs NAT_ROUNDS times (default 3), the rounds interleaved; a cell shows how many rounds
# connected, how (as the client saw it), and the median connect time: from the client's connect
# call, after its DHT bootstrap, to the open stream. hyperpunch is the release build.
# Prints a markdown section on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rounds=${NAT_ROUNDS:-3}
timeout_s=${NAT_TIMEOUT:-36}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "==> building hyperpunch (release) for the NAT matrix" >&2
source bench/lib.sh
hp=$(bench_build_hyperpunch)

nats="open consistent random"
impls="js/js hp/hp js/hp hp/js"
cells=()
for r in $(seq 1 "$rounds"); do
  for s in $nats; do
    for c in $nats; do
      for i in $impls; do cells+=("$i:$s+$c"); done
    done
  done
  for i in $impls; do cells+=("$i:random+random:relay"); done
  cells+=("js/hp:random+random:fallback" "hp/hp:random+random:fallback")
done
echo "==> the NAT matrix: ${#cells[@]} connections (${rounds} rounds)" >&2
set +e
bash "$root/tests/nat/lab.sh" --hp "$hp" --timeout "$timeout_s" --out "$tmp/cells.tsv" "${cells[@]}" >/dev/null
rc=$?
set -e
if [ $rc = 77 ]; then
  echo "(NAT matrix skipped: this machine cannot run the lab, see above)" >&2
  exit 0
fi
[ $rc = 0 ] || { echo "error: tests/nat/lab.sh failed ($rc)" >&2; exit 1; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$tmp/cells.tsv" "$rounds" "$load_before" "$load_after" "$timeout_s" <<'EOF'
import sys, statistics, datetime, subprocess
path, rounds, load_before, load_after, timeout_s = sys.argv[1:]
cells = {}
for line in open(path):
    f = line.rstrip('\n').split('\t')
    key = (f[0], f[1], f[2], f[3], f[4])
    cells.setdefault(key, []).append(f)

def node_version():
    try:
        return subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()
    except Exception:
        return '?'

def summary(runs):
    ok = [r for r in runs if r[5] == 'ok']
    if not ok:
        errs = sorted({r[9] for r in runs})
        return f"✗ 0/{len(runs)} ({', '.join(errs)})", None
    hows = sorted({r[6] for r in ok})
    ms = statistics.median(int(r[7]) for r in ok)
    return f"{len(ok)}/{len(runs)} {'/'.join(hows)} {ms / 1000:.2f} s", ms

impls = [('js', 'js', 'JS → JS'), ('hp', 'hp', 'hyperpunch → hyperpunch'),
         ('js', 'hp', 'JS server ← hyperpunch client'), ('hp', 'js', 'hyperpunch server ← JS client')]
rows = []
for s in ['open', 'consistent', 'random']:
    for c in ['open', 'consistent', 'random']:
        rows.append((s, c, 'none'))
rows.append(('random', 'random', 'relay'))
rows.append(('random', 'random', 'fallback'))

now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
print()
print('## NAT matrix (hyperdht connections through NATs)')
print()
print(f"{now}, hyperdht 6.34.0 on node {node_version()}, hyperpunch release build, `bash bench/nat.sh`"
      f" (tests/nat/lab.sh), {rounds} rounds per cell, interleaved.")
print()
print('Server NAT + client NAT. Each cell: rounds connected, how the client got its stream (direct: to an'
      ' open peer; punched: holepunched; relayed: through the blind relay), the median time from the'
      " client's connect call (after its DHT bootstrap) to the open stream. open: a public address;"
      ' consistent: MASQUERADE (the port is kept); random: MASQUERADE --random-fully (a new port per'
      ' destination); every NAT router runs a conntrack firewall. The DHT: 4 JS nodes on distinct'
      ' addresses. relay: the client pairs through `hyperpunch dht relay` (`--relay-through` /'
      ' `relayThrough`); relay fallback: the hyperpunch client only has the relay in HYPERPUNCH_RELAYS and'
      ' falls back to it when the punch fails (JS has no such fallback).')
print()
print('| server + client | ' + ' | '.join(i[2] for i in impls) + ' | time hyperpunch/JS |')
print('|---|' + '---|' * len(impls) + '---:|')
missing = []
for s, c, relay in rows:
    label = f"{s} + {c}" + {'none': '', 'relay': ' (relay)', 'fallback': ' (relay fallback)'}[relay]
    out = []
    times = {}
    for si, ci, _ in impls:
        runs = cells.get((si, ci, s, c, relay), [])
        if not runs:
            out.append('-')
            continue
        text, ms = summary(runs)
        out.append(text)
        times[(si, ci)] = ms
        oks = sum(r[5] == 'ok' for r in runs)
        if (si != 'js' or ci != 'js') and relay != 'fallback':
            js_ok = sum(r[5] == 'ok' for r in cells.get(('js', 'js', s, c, relay), []))
            if js_ok and not oks:
                missing.append(f"{label}: {si}/{ci}")
    j, h = times.get(('js', 'js')), times.get(('hp', 'hp'))
    ratio = f"{h / j:.2f}×" if j and h else '-'
    print(f"| {label} | " + ' | '.join(out) + f" | {ratio} |")
print()
if missing:
    print('Cells where JS-JS connected and this pairing never did: ' + '; '.join(missing) + '.')
else:
    print('hyperpunch connects in every cell where JS-JS does, in both mixes with JS.')
print()
print('The birthday-paradox cells (consistent + random, either way) vary run to run: each round is a'
      ' geometric draw (the consistent side probes a random port every ~21 ms, each matching one of the'
      ' random side\'s 256 ports with probability 256/64536: ~5.5 s on average), so a few rounds do not'
      f' rank JS and hyperpunch there. Client timeout {timeout_s} s.')
print()
print(f"Load average (1/5/15 min) before: {load_before}; after: {load_after}.")
EOF
