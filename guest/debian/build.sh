#!/usr/bin/env bash
# Build Rampart's optional Debian 12 (bookworm) disk image with debootstrap, from Debian's archive.
#
# Output (default guest/out/debian12, override with RAMPART_DEBIAN_OUT):
#   disk.qcow2     qcow2 (no backing file, no encryption, zlib-compressed clusters) of RAMPART_DEBIAN_SIZE
#                  (default 4G), bootable by the BIOS (SeaBIOS): MBR with SYSLINUX's mbr.bin and
#                    partition 1  FAT (label RAMPARTBOOT), 64 MiB from 1 MiB, bootable flag, type c:
#                                 ldlinux.sys + ldlinux.c32 (syslinux --install), syslinux.cfg, vmlinuz,
#                                 initrd.img
#                    partition 2  ext4 (label rampart-root), the root filesystem, filling the rest
#   vmlinuz        the image's kernel (linux-image-cloud-amd64), also usable for direct kernel boot
#   initrd.img     the image's initramfs (virtio disk drivers), also usable for direct kernel boot
#   manifest.json  {"boot","cmdline","disk","format","initrd","kernel","kernelVersion","name","sha256"}
#                  (keys sorted; boot is "bios": the disk boots by itself, no -kernel needed)
#   inputs.sha256  hash of this script, guest/debian/files/** and the guest agent: when it matches, the
#                  whole build is skipped (RAMPART_DEBIAN_REBUILD=1 forces one)
#
# Boot it from the disk alone (SeaBIOS -> mbr.bin -> SYSLINUX -> kernel with the manifest's cmdline,
# root=LABEL=rampart-root, resolved by the initramfs' udev/blkid), e.g. as a virtio-blk disk with
# bootindex=0, plus a NoCloud seed (see guest/README.md). Direct kernel boot with vmlinuz, initrd.img and
# the manifest's cmdline works too. No loop devices and no mounts of the image: the root tree is built
# with debootstrap in a directory, turned into an ext4 image with `mkfs.ext4 -d`; the boot partition is
# a FAT image made with mkfs.vfat, `syslinux --install` (which writes through mtools) and mcopy; both
# are placed into a sparse raw disk partitioned with sfdisk, and converted with qemu-img.
#
# The FAT partition holds a copy of the kernel and initramfs made at build time and is not mounted in
# the guest (its /boot stays in the ext4 root): a kernel upgraded inside the guest does not update the
# copy SYSLINUX boots. The platform rebuilds images instead of upgrading kernels in place.
#
# Needs root and the Debian packages debootstrap, e2fsprogs, fdisk, qemu-utils, syslinux,
# syslinux-common, dosfstools, mtools (and network access to the Debian archive). Optional:
# RAMPART_DEBIAN_MIRROR, RAMPART_DEBIAN_SECURITY_MIRROR (default: the ones apt uses on this machine,
# else deb.debian.org).
set -euo pipefail
export LC_ALL=C
umask 022

DEBIAN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_DIR=$(dirname "$DEBIAN_DIR")
FILES=$DEBIAN_DIR/files
AGENT=$GUEST_DIR/rootfs/usr/bin/rampart-guest-agent
OUT=${RAMPART_DEBIAN_OUT:-$GUEST_DIR/out/debian12}
CACHE=${RAMPART_DEBIAN_CACHE:-$GUEST_DIR/out/.cache/debootstrap}
SUITE=bookworm
SIZE=${RAMPART_DEBIAN_SIZE:-4G}
LABEL=rampart-root
BOOT_LABEL=RAMPARTBOOT
MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin
CMDLINE="root=LABEL=$LABEL ro console=ttyS0"
PACKAGES=(
	linux-image-cloud-amd64 initramfs-tools zstd # kernel + initramfs (virtio modules)
	systemd systemd-sysv udev dbus libpam-systemd # init, devices, logind (ACPI power button)
	openssh-server                                # key-only SSH (keys from the NoCloud seed)
	iproute2 netbase kmod e2fsprogs util-linux    # ip (agent), modules, fsck, blkid/mount (seed)
	procps less ca-certificates                   # basic administration
)

SCRIPT=guest/debian/build.sh
# shellcheck source=guest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

need_cmd debootstrap debootstrap
need_cmd mkfs.ext4 e2fsprogs
need_cmd sfdisk fdisk
need_cmd qemu-img qemu-utils
need_cmd syslinux syslinux
need_cmd mkfs.vfat dosfstools
need_cmd mcopy mtools
[[ -f $MBR_BIN ]] || die "missing $MBR_BIN: install the Debian package 'syslinux-common' (apt-get install syslinux-common)"
need_cmd sha256sum coreutils
need_cmd chroot coreutils
need_cmd find findutils
[[ -d $FILES ]] || die "missing $FILES"
[[ -f $AGENT ]] || die "missing the guest agent $AGENT"
[[ $SIZE =~ ^[0-9]+G$ ]] && ((${SIZE%G} >= 2 && ${SIZE%G} <= 64)) || die "RAMPART_DEBIAN_SIZE must be 2G..64G, got '$SIZE'"

# The mirrors apt uses here (deb822 "URIs:" or one-line "deb URI"), else deb.debian.org.
apt_uri() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\).*/\2/p' |
		tr ' ' '\n' | grep -E "^https?://[^ ]*/$1/?\$" | head -n 1 | sed 's:/*$::'
}
MIRROR=${RAMPART_DEBIAN_MIRROR:-$(apt_uri debian || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${RAMPART_DEBIAN_SECURITY_MIRROR:-$(apt_uri debian-security || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# --- cache ------------------------------------------------------------------------------------
inputs_hash() {
	{
		printf 'suite=%s size=%s label=%s cmdline=%s mirror=%s security=%s packages=%s\n' \
			"$SUITE" "$SIZE" "$LABEL" "$CMDLINE" "$MIRROR" "$SECURITY_MIRROR" "${PACKAGES[*]}"
		sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
		sha256sum "$AGENT" | cut -d' ' -f1
		(cd "$FILES" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
		(cd "$FILES" && find . -type f -perm /111 -print | sort)
	} | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)
if [[ -z ${RAMPART_DEBIAN_REBUILD:-} && -f $OUT/inputs.sha256 && $(cat "$OUT/inputs.sha256") == "$HASH" ]] &&
	[[ -f $OUT/disk.qcow2 && -f $OUT/vmlinuz && -f $OUT/initrd.img && -f $OUT/manifest.json ]]; then
	log "up to date: $OUT (inputs $HASH)"
	exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap needs chroot and file ownership)"

# --- staging ----------------------------------------------------------------------------------
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
ROOT=$WORK/root
unmount_all() {
	# Anything still mounted below the work dir (debootstrap's /proc, /sys; our /proc), deepest first.
	local m
	for m in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
}
cleanup() {
	unmount_all
	if awk -v w="$WORK/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
		echo "guest/debian/build.sh: warning: mounts left under $WORK, not removing it" >&2
		return
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$SECONDS
log "debootstrap $SUITE from $MIRROR into $ROOT"
mkdir -p "$ROOT"
# Our initramfs settings must be in place before the kernel package builds the initramfs.
install -D -m 0644 "$FILES/etc/initramfs-tools/conf.d/rampart.conf" "$ROOT/etc/initramfs-tools/conf.d/rampart.conf"
install -D -m 0644 /dev/stdin "$ROOT/usr/share/initramfs-tools/modules.d/rampart" <<'EOF'
# Rampart: disks are virtio (virtio-blk, or virtio-scsi); ext4 is built into the cloud kernel.
virtio_pci
virtio_blk
virtio_scsi
sd_mod
EOF
include=$(printf '%s\n' "${PACKAGES[@]}" | paste -sd, -)
if ! debootstrap --variant=minbase --merged-usr --components=main --include="$include" \
	--cache-dir="$CACHE" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
	tail -n 30 "$WORK/debootstrap.log" >&2
	[[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
	die "debootstrap failed (mirror $MIRROR)"
fi
log "debootstrap done in $((SECONDS - START)) s"

# Security and point-release updates, then clean the package caches.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
in_root apt-get -qq update >"$WORK/apt.log" 2>&1 || {
	tail -n 20 "$WORK/apt.log" >&2
	die "apt-get update in the image failed ($MIRROR, $SECURITY_MIRROR)"
}
in_root apt-get -qq -y -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef \
	dist-upgrade >>"$WORK/apt.log" 2>&1 || {
	tail -n 20 "$WORK/apt.log" >&2
	die "apt-get dist-upgrade in the image failed"
}
# A security update of the kernel is a new package (new ABI): keep only the newest kernel.
newest=$(in_root dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'linux-image-[0-9]*' |
	awk '$1 == "ii" { print $2 }' | sort -V | tail -n 1)
for pkg in $(in_root dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'linux-image-[0-9]*' | awk '$1 == "ii" { print $2 }'); do
	[[ $pkg == "$newest" ]] || in_root apt-get -qq -y purge "$pkg" >>"$WORK/apt.log" 2>&1 || die "cannot remove the old kernel $pkg"
done
in_root apt-get -qq clean
umount "$ROOT/proc"
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT/debootstrap"
log "packages updated at $((SECONDS - START)) s"

# --- configuration ----------------------------------------------------------------------------
cp -R "$FILES/." "$ROOT/"
install -m 0755 "$AGENT" "$ROOT/usr/bin/rampart-guest-agent"
chmod 0755 "$ROOT/usr/sbin/rampart-nocloud" "$ROOT/usr/local/bin/usleep"
printf 'debian\n' >"$ROOT/etc/hostname"
printf 'LANG=C.UTF-8\n' >"$ROOT/etc/default/locale"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
printf '# <file system> <mount point> <type> <options> <dump> <pass>\nLABEL=%s / ext4 errors=remount-ro 0 1\n' \
	"$LABEL" >"$ROOT/etc/fstab"
# No DNS server until the network configuration names one (systemd-resolved is not installed).
: >"$ROOT/etc/resolv.conf"
# Every clone gets its own identity: an empty machine-id (systemd makes one on first boot) and no SSH
# host keys (rampart-nocloud makes them before sshd starts).
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT"/etc/ssh/ssh_host_*
rm -rf "$ROOT/var/lib/rampart-nocloud"
# Root has no password (locked '*'): console logins are impossible, SSH is key-only.
in_root passwd -l root >/dev/null
in_root systemctl enable rampart-nocloud.service systemd-networkd.service ssh.service \
	>/dev/null 2>&1 || die "systemctl enable failed in the image"
# systemd-firstboot would prompt on the console on first boot (empty machine-id): never run it.
in_root systemctl mask systemd-firstboot.service >/dev/null 2>&1 || true
rm -f "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT/var/cache/debconf/"*-old
find "$ROOT/tmp" "$ROOT/var/tmp" -mindepth 1 -delete

# --- kernel and initramfs ---------------------------------------------------------------------
KERNEL=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)
[[ -n $KERNEL ]] || die "no kernel in the image's /boot (linux-image-cloud-amd64 did not install?)"
KVER=${KERNEL##*/vmlinuz-}
[[ -f $ROOT/boot/initrd.img-$KVER ]] || die "no initrd.img-$KVER in the image's /boot (initramfs-tools failed?)"
install -m 0644 "$KERNEL" "$WORK/vmlinuz"
install -m 0644 "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"

# --- disk -------------------------------------------------------------------------------------
# MBR (SYSLINUX's boot code), partition 1: FAT boot partition (64 MiB from 1 MiB, active), partition
# 2: ext4 root made from the tree, to the end of the disk.
DISK_BYTES=$((${SIZE%G} * 1024 * 1024 * 1024))
MIB=$((1024 * 1024))
BOOT_START=$MIB
BOOT_BYTES=$((64 * MIB))
PART_START=$((BOOT_START + BOOT_BYTES))
PART_BYTES=$((DISK_BYTES - PART_START))

# The boot partition: FAT with SYSLINUX (ldlinux.sys is installed through mtools, no mount). The hidden
# sectors (-h) must be the partition's first LBA: SYSLINUX's boot sector uses them to find itself.
truncate -s "$BOOT_BYTES" "$WORK/boot.fat"
mkfs.vfat -h $((BOOT_START / 512)) -n "$BOOT_LABEL" "$WORK/boot.fat" >/dev/null || die "mkfs.vfat failed"
syslinux --install "$WORK/boot.fat" || die "syslinux --install failed"
cat >"$WORK/syslinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/boot.fat" "$WORK/syslinux.cfg" "$WORK/vmlinuz" "$WORK/initrd.img" ::/ ||
	die "mcopy to the boot partition failed (too small for the kernel and initramfs?)"
rm -f "$WORK/syslinux.cfg"

truncate -s "$PART_BYTES" "$WORK/root.ext4"
mkfs.ext4 -q -F -L "$LABEL" -d "$ROOT" -E lazy_itable_init=1,lazy_journal_init=1 "$WORK/root.ext4" ||
	die "mkfs.ext4 -d failed (e2fsprogs >= 1.43 needed)"
truncate -s "$DISK_BYTES" "$WORK/disk.raw"
printf 'label: dos\nstart=%s, size=%s, type=c, bootable\nstart=%s, size=%s, type=83\n' \
	$((BOOT_START / 512)) $((BOOT_BYTES / 512)) $((PART_START / 512)) $((PART_BYTES / 512)) |
	sfdisk -q "$WORK/disk.raw" >/dev/null
# Only the boot code (440 bytes): the disk signature and the partition table stay sfdisk's.
dd if="$MBR_BIN" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/boot.fat" of="$WORK/disk.raw" bs=1M seek=$((BOOT_START / MIB)) conv=sparse,notrunc status=none
dd if="$WORK/root.ext4" of="$WORK/disk.raw" bs=1M seek=$((PART_START / MIB)) conv=sparse,notrunc status=none
rm -f "$WORK/boot.fat" "$WORK/root.ext4"
qemu-img convert -c -f raw -O qcow2 "$WORK/disk.raw" "$WORK/disk.qcow2"
rm -f "$WORK/disk.raw"
chmod 0644 "$WORK/disk.qcow2"

sha_d=$(sha256sum "$WORK/disk.qcow2" | cut -d' ' -f1)
sha_i=$(sha256sum "$WORK/initrd.img" | cut -d' ' -f1)
sha_k=$(sha256sum "$WORK/vmlinuz" | cut -d' ' -f1)
# Same layout as JSON.stringify(manifest, null, 2) + "\n", keys sorted.
cat >"$WORK/manifest.json" <<JSON
{
  "boot": "bios",
  "cmdline": "$CMDLINE",
  "disk": "disk.qcow2",
  "format": "qcow2",
  "initrd": "initrd.img",
  "kernel": "vmlinuz",
  "kernelVersion": "$KVER",
  "name": "debian12",
  "sha256": {
    "disk.qcow2": "$sha_d",
    "initrd.img": "$sha_i",
    "vmlinuz": "$sha_k"
  }
}
JSON
chmod 0644 "$WORK/manifest.json"
echo "$HASH" >"$WORK/inputs.sha256"

# Each rename is atomic; the manifest and the input hash go last.
rm -f "$OUT/inputs.sha256"
for f in disk.qcow2 vmlinuz initrd.img manifest.json inputs.sha256; do mv -f "$WORK/$f" "$OUT/$f"; done
log "built $OUT in $((SECONDS - START)) s (kernel $KVER, disk $(du -h "$OUT/disk.qcow2" | cut -f1) of $SIZE)"
