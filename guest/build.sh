#!/usr/bin/env bash
# Build Rampart's default tiny guest: a Debian cloud kernel plus a busybox initramfs.
#
# Output (default guest/out/tiny, override with RAMPART_GUEST_OUT):
#   vmlinuz        copy of the newest /boot/vmlinuz-*-cloud-amd64 (mode 0644)
#   initrd.img     gzip'd newc cpio: busybox, /init, guest agent, acpid handler, virtio modules
#   manifest.json  {"format","initrd","kernel","kernelVersion","name","sha256":{...}} (keys sorted)
#
# The build is reproducible: the same inputs give byte-identical outputs (fixed mtimes from
# SOURCE_DATE_EPOCH, default 0; sorted file list; normalized modes and owners; gzip -n).
#
# Inputs come from Debian packages: linux-image-cloud-amd64, busybox-static, cpio, gzip.
# Optional overrides: RAMPART_GUEST_KERNEL_VERSION (e.g. 6.1.0-56-cloud-amd64),
# RAMPART_BUSYBOX (path of a static busybox).
set -euo pipefail
export LC_ALL=C
umask 022

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOTFS_SRC=$GUEST_DIR/rootfs
OUT=${RAMPART_GUEST_OUT:-$GUEST_DIR/out/tiny}
EPOCH=${SOURCE_DATE_EPOCH:-0}
BUSYBOX=${RAMPART_BUSYBOX:-/bin/busybox}

# Load order matters (dependencies first). Built-in ones are skipped.
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	failover net_failover virtio_net virtio_console virtio_blk button evdev)

SCRIPT=guest/build.sh
# shellcheck source=guest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd cpio cpio
need_cmd gzip gzip
need_cmd sha256sum coreutils
need_cmd find findutils
[[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds, got '$EPOCH'"
cpio --help 2>/dev/null | grep -- '--reproducible' >/dev/null || die "cpio lacks --reproducible: need GNU cpio >= 2.13 (Debian package 'cpio')"

# --- kernel -------------------------------------------------------------------------------
if [[ -n ${RAMPART_GUEST_KERNEL_VERSION:-} ]]; then
	KVER=$RAMPART_GUEST_KERNEL_VERSION
	KERNEL=/boot/vmlinuz-$KVER
	[[ -e $KERNEL ]] || die "$KERNEL not found (RAMPART_GUEST_KERNEL_VERSION=$KVER)"
else
	shopt -s nullglob
	kernels=(/boot/vmlinuz-*-cloud-amd64)
	shopt -u nullglob
	((${#kernels[@]} > 0)) || die "no /boot/vmlinuz-*-cloud-amd64: install the Debian package 'linux-image-cloud-amd64' (apt-get install linux-image-cloud-amd64)"
	KERNEL=$(printf '%s\n' "${kernels[@]}" | sort -V | tail -n 1)
	KVER=${KERNEL#/boot/vmlinuz-}
fi
[[ -r $KERNEL ]] || die "cannot read $KERNEL (mode $(stat -c %a "$KERNEL")): run as root"
MODDIR=/usr/lib/modules/$KVER
[[ -d $MODDIR ]] || MODDIR=/lib/modules/$KVER
[[ -d $MODDIR ]] || die "no modules for kernel $KVER under /usr/lib/modules: reinstall the Debian package 'linux-image-$KVER'"

# --- busybox ------------------------------------------------------------------------------
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: install the Debian package 'busybox-static' (apt-get install busybox-static)"
if ldd_out=$(ldd "$BUSYBOX" 2>&1) && [[ $ldd_out != *"not a dynamic executable"* && $ldd_out != *"statically linked"* ]]; then
	die "$BUSYBOX is dynamically linked: install the Debian package 'busybox-static' (apt-get install busybox-static)"
fi

[[ -f $ROOTFS_SRC/init ]] || die "missing $ROOTFS_SRC/init"

# --- staging ------------------------------------------------------------------------------
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ROOT=$WORK/root
mkdir -p "$ROOT"
for d in bin sbin usr/bin usr/sbin dev proc sys run tmp root etc var mnt "lib/modules/$KVER" etc/rampart; do
	mkdir -p "$ROOT/$d"
done
cp -R "$ROOTFS_SRC/." "$ROOT/"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"

# Kernel modules: plain .ko, or .ko.xz/.ko.zst/.ko.gz decompressed here so busybox insmod can load them.
: >"$ROOT/etc/rampart/modules"
for m in "${MODULES[@]}"; do
	if [[ -f $MODDIR/modules.builtin ]] && grep -Eq "/${m}\.ko$" "$MODDIR/modules.builtin"; then
		log "module $m is built in, skipping"
		continue
	fi
	src=$(find "$MODDIR/kernel" -type f \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) | sort | head -n 1)
	[[ -n $src ]] || die "kernel module $m not found under $MODDIR (and not built in): reinstall the Debian package 'linux-image-$KVER'"
	dst=$ROOT/lib/modules/$KVER/$m.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz)
		need_cmd xz xz-utils
		xz -dc "$src" >"$dst"
		;;
	*.ko.zst)
		need_cmd zstd zstd
		zstd -qdc "$src" >"$dst"
		;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	esac
	echo "$m" >>"$ROOT/etc/rampart/modules"
done

# Normalize modes: directories 0755, files 0644, executables 0755; then fixed owners/mtimes.
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f -perm /111 -exec chmod 0755 {} +
find "$ROOT" -type f ! -perm /111 -exec chmod 0644 {} +
chmod 0755 "$ROOT/init" "$ROOT/usr/bin/rampart-guest-agent"
[[ -f $ROOT/etc/acpi/PWRF/00000080 ]] && chmod 0755 "$ROOT/etc/acpi/PWRF/00000080"
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
[[ -f $ROOT/etc/shadow ]] && chmod 0600 "$ROOT/etc/shadow"
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +

# --- archive ------------------------------------------------------------------------------
(cd "$ROOT" && find . -mindepth 1 -printf '%P\0' | sort -z |
	cpio --null --quiet -o -H newc --reproducible --owner=0:0) | gzip -n -9 >"$WORK/initrd.img"

cp "$KERNEL" "$WORK/vmlinuz"
chmod 0644 "$WORK/vmlinuz" "$WORK/initrd.img"
touch -d "@$EPOCH" "$WORK/vmlinuz" "$WORK/initrd.img"

sha_k=$(sha256sum "$WORK/vmlinuz" | cut -d' ' -f1)
sha_i=$(sha256sum "$WORK/initrd.img" | cut -d' ' -f1)
# Same layout as JSON.stringify(manifest, null, 2) + "\n", keys sorted.
cat >"$WORK/manifest.json" <<JSON
{
  "format": "kernel-initrd",
  "initrd": "initrd.img",
  "kernel": "vmlinuz",
  "kernelVersion": "$KVER",
  "name": "tiny",
  "sha256": {
    "initrd.img": "$sha_i",
    "vmlinuz": "$sha_k"
  }
}
JSON
chmod 0644 "$WORK/manifest.json"
touch -d "@$EPOCH" "$WORK/manifest.json"

# Each rename is atomic; the manifest goes last so it never describes files not yet in place.
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initrd.img" "$OUT/initrd.img"
mv -f "$WORK/manifest.json" "$OUT/manifest.json"
log "built $OUT (kernel $KVER, initrd sha256 $sha_i)"
