#!/usr/bin/env bash
# Installs everything Rampart needs on Debian 12, idempotently: Debian packages, npm dependencies
# (npm ci), the TypeScript build and the default guest image. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  qemu-system-x86 qemu-utils        # the hypervisor (TCG everywhere, KVM where usable)
  busybox-static cpio gzip          # the tiny guest's userland and initramfs
  linux-image-cloud-amd64           # the tiny guest's kernel (virtio drivers as modules)
  util-linux iproute2 nftables      # setpriv for unprivileged QEMU; networking (later issues)
  cgroup-tools                      # cgexec: QEMU joins its cgroups before it execs (resource limits)
  clamav zstd                       # image scanning (clamscan) and at-rest compression (zstd)
  python3 make g++                  # node-gyp, if better-sqlite3 has to build from source
  debootstrap e2fsprogs fdisk       # the optional Debian 12 disk image (guest/debian/build.sh)
  syslinux syslinux-common          # its boot loader (SYSLINUX on a FAT partition, MBR boot code)
  genisoimage dosfstools mtools     # NoCloud seeds (cidata ISO or vfat); the Debian image's FAT boot partition
  openssh-client                    # ssh, ssh-keygen: the Debian image test logs in with a seeded key
  chromium                          # headless browser of the web console's test (playwright-core drives it)
  postgresql                        # the second database engine (cluster mode); its tests (scripts/test-postgres.sh)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  [[ "$pkg" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep 'install ok installed' >/dev/null; then missing+=("$pkg"); fi
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null || [[ $(node -p 'process.versions.node.split(".")[0]') -lt 20 ]]; then
  echo "setup: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm ci only when the lock file changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: building"
npm run --silent build
bash guest/build.sh >/dev/null
# The optional Debian 12 image (debootstrap; about a minute cold, skipped when its inputs are unchanged).
bash guest/debian/build.sh
echo "setup: ready (guest images in guest/out/tiny and guest/out/debian12)"
