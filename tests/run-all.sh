#!/usr/bin/env bash
# Runs Ferry's whole test suite on a fresh Debian machine: installs the real clients the
# end-to-end tests drive (curl, lftp, busybox, ncftp, tnftp, tftp-hpa, atftp, Python), then
# runs every test.
# Run as root (privilege-drop, port-20 binder and network-namespace tests need it).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
command -v lftp >/dev/null || need_pkgs+=(lftp)
command -v busybox >/dev/null || need_pkgs+=(busybox)
command -v ncftpget >/dev/null || need_pkgs+=(ncftp)
command -v ftp >/dev/null || need_pkgs+=(tnftp)
command -v tftp >/dev/null || need_pkgs+=(tftp-hpa)
command -v atftp >/dev/null || need_pkgs+=(atftp)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v tc >/dev/null || need_pkgs+=(iproute2)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)
command -v setcap >/dev/null || need_pkgs+=(libcap2-bin)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
# tests/package.rs: the Debian package (cargo-deb needs dpkg-shlibdeps and strip; the test runs
# lintian and logrotate) and the container image (podman with runc, a base made by debootstrap).
command -v dpkg-shlibdeps >/dev/null || need_pkgs+=(dpkg-dev)
command -v strip >/dev/null || need_pkgs+=(binutils)
command -v lintian >/dev/null || need_pkgs+=(lintian)
command -v logrotate >/dev/null || need_pkgs+=(logrotate)
command -v podman >/dev/null || need_pkgs+=(podman)
command -v runc >/dev/null || need_pkgs+=(runc)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
# tests/firmware.rs: real boot firmware in QEMU (OVMF's UEFI PXE, iPXE ROMs and EFI build,
# U-Boot for arm64), DHCP from dnsmasq (dnsmasq-base: the program without a system service).
# Their times are compared with tftpd-hpa's when benches/compare.sh installed it.
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null || need_pkgs+=(qemu-system-arm)
[ -e /usr/share/ovmf/OVMF.fd ] || need_pkgs+=(ovmf)
[ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] || need_pkgs+=(ipxe-qemu)
[ -e /usr/lib/ipxe/snponly.efi ] || need_pkgs+=(ipxe)
[ -e /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || need_pkgs+=(u-boot-qemu)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
# tests/ktls_guest.rs: a QEMU guest with Debian's stock kernel (kernel TLS), ldd for its initramfs.
command -v ldd >/dev/null || need_pkgs+=(libc-bin)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run-all.sh: missing ${need_pkgs[*]}; run as root so they can be installed" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# promtool (tests/dashboards.rs) comes from Debian's prometheus package, unpacked rather than
# installed: only the checker is needed, not a Prometheus service and its user.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    tools=/var/tmp/ferry-tools
    mkdir -p "$tools"
    (cd "$tools" && rm -f prometheus_*.deb &&
      { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; } &&
      dpkg -x prometheus_*.deb prometheus && ln -sf "$tools/prometheus/usr/bin/promtool" /usr/local/bin/promtool) ||
      echo "tests/run-all.sh: cannot fetch promtool; tests/dashboards.rs will report itself skipped" >&2
  fi
fi

# The kernel of tests/ktls_guest.rs: Debian's linux-image-amd64 (TLS as a module), unpacked
# rather than installed; without it the test reports itself skipped.
guest=/var/tmp/ferry-tools/ktls-guest
if [ "$(id -u)" -eq 0 ] && ! ls "$guest"/unpacked/boot/vmlinuz-* >/dev/null 2>&1; then
  mkdir -p "$guest"
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^<]*\)$/\1/p' | head -n1)
  (cd "$guest" && [ -n "$pkg" ] && rm -f linux-image-*.deb &&
    { apt-get download "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$pkg" >/dev/null 2>&1; }; } &&
    dpkg -x linux-image-*.deb unpacked && rm -f linux-image-*.deb) ||
    echo "tests/run-all.sh: cannot fetch Debian's kernel; tests/ktls_guest.rs will report itself skipped" >&2
fi

# The manifests test reads YAML with the python3 on PATH (which may not be Debian's).
python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q pyyaml

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run-all.sh: not root: privilege, binder and namespace tests will report themselves skipped" >&2
fi

# One build for everything, then every test target (unit, transcript, end-to-end).
cargo build --all-targets --locked
cargo test --all-targets --locked -- --test-threads="${FERRY_TEST_THREADS:-4}"
