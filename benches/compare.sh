#!/usr/bin/env bash
# Ferry against vsftpd, tftpd-hpa and atftpd on loopback, in one run, as ratios.
# Installs the reference servers from Debian packages (root), builds Ferry and the load
# generator in release mode, then runs benches/compare.py, which starts each server per
# scenario, drives it with ferry-loadgen and writes benches/results/latest{,-PROFILE}.{md,json}.
#
#   benches/compare.sh                   full profile (the issue's sizes; ~8-25 min)
#   benches/compare.sh --profile quick   reduced sizes, every scenario (~3-5 min)
#   benches/compare.sh --smoke           tiny, Ferry + whatever is installed, no installs
#   extra flags go to compare.py: --only sessions,idle  --servers ferry,vsftpd  --workers N
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done
cache="${FERRY_BENCH_CACHE:-/var/tmp/ferry-bench/pkgs}"

if [ "$smoke" = 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "compare.sh: run as root (installs packages, starts servers, uses cgroups)" >&2
    exit 1
  fi
  need=()
  command -v vsftpd >/dev/null || [ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
  [ -x /usr/sbin/in.tftpd ] || need+=(tftpd-hpa)
  command -v iperf3 >/dev/null || need+=(iperf3)
  command -v python3 >/dev/null || need+=(python3)
  # The FTPS rows' certificate is made with openssl (vsftpd's ssl_enable needs its library anyway).
  command -v openssl >/dev/null || need+=(openssl)
  # atftpd's own libraries: the package itself conflicts with tftpd-hpa, so it is unpacked.
  need+=(libwrap0 libpcre2-8-0)
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg -s "${need[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # Packaged daemons (if an init system started them) listen on 21/69; ours use high ports.
  if [ ! -x "$cache/atftpd/usr/sbin/atftpd" ]; then
    mkdir -p "$cache"
    (cd "$cache" && rm -f atftpd_*.deb && apt-get download atftpd >/dev/null 2>&1 &&
      dpkg -x atftpd_*.deb atftpd) || echo "compare.sh: cannot fetch atftpd; its column will be skipped" >&2
  fi
  cargo build --release --locked --bin ferry --bin ferry-loadgen
else
  [ -x target/release/ferry ] && [ -x target/release/ferry-loadgen ] ||
    cargo build --release --locked --bin ferry --bin ferry-loadgen
fi

atftpd="$cache/atftpd/usr/sbin/atftpd"
[ -x "$atftpd" ] || atftpd=""
exec env ATFTPD="$atftpd" python3 benches/compare.py "$@"
