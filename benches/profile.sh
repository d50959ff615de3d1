#!/usr/bin/env bash
# Profiles Ferry under one load-generator run with `perf record -a -g` and prints where the
# CPU went: the share per thread (Ferry's workers against the load generator and the kernel),
# then the hottest call paths inside Ferry's workers, self and children. The README's
# explanations of the benchmark goals (e.g. "99% of the RETR time is inside sendfile") come
# from this.
#
#   benches/profile.sh ftp-get --path big --expect-size 1073741824 -c 1 -n 5 --buf-size 1M
#   benches/profile.sh tftp-get --path mid --blksize 1468 --windowsize 16 -c 200 -n 200 --gro
#
# Uses the files and the Ferry configuration of the last `benches/compare.sh` run (full
# profile), which must have run first; root, with perf installed (Debian: linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."

work="${FERRY_BENCH_WORK:-/var/tmp/ferry-bench/full}"
conf="$work/ferry-w0.toml"
[ -f "$conf" ] || { echo "profile.sh: no $conf; run benches/compare.sh first" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile.sh: perf is not installed" >&2; exit 1; }
[ $# -ge 1 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
[ -x target/release/ferry ] && [ -x target/release/ferry-loadgen ] ||
  cargo build --release --locked --bin ferry --bin ferry-loadgen

case "$1" in
  tftp-*) addr=127.0.0.1:$(sed -n 's/^listen = \["127.0.0.1:\([0-9]*\)"\]$/\1/p' "$conf" | tail -1) ;;
  *) addr=127.0.0.1:$(sed -n 's/^listen = \["127.0.0.1:\([0-9]*\)"\]$/\1/p' "$conf" | head -1) ;;
esac
# The served files in the page cache, as compare.py has them.
cat "$work"/root/* >/dev/null 2>&1 || true

# FERRY_* variables are configuration keys to Ferry: this script's own must not reach it.
env -u FERRY_BENCH_WORK target/release/ferry -c "$conf" 2>"$work/profile-ferry.stderr" &
ferry=$!
trap 'kill $ferry 2>/dev/null; wait $ferry 2>/dev/null || true' EXIT
sleep 1
data="$work/perf.data"
perf record -q -a -g -o "$data" -- target/release/ferry-loadgen "$1" --addr "$addr" "${@:2}" |
  grep -E '^\| (ok|failed|mb_per_s|sessions_per_s|transfers_per_s) '

echo; echo "== CPU share per thread (all CPUs) =="
perf report -i "$data" --no-children --sort comm -q -g none 2>/dev/null | head -12
echo; echo "== Ferry workers: hottest paths, children included =="
perf report -i "$data" --children --comm "$(perf report -i "$data" --sort comm -q -g none 2>/dev/null |
  awk '$NF ~ /^ferry-w/ {print $NF}' | paste -sd, -)" --sort sym -q -g none 2>/dev/null | head -30
echo; echo "(perf data: $data)"
