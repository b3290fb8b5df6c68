#!/usr/bin/env bash
# Builds the QEMU test guest: a Debian kernel plus an initramfs holding busybox, the kernel modules the
# NVMe/TCP tests need, the filesystem tools the node plugin runs, and the command agent (guest/agent).
#
# Idempotent and non-interactive; runs as root on Debian 12. Everything lands in the cache directory
# ($RDS_QEMU_CACHE, default <repo>/.cache/qemu). A run whose inputs are unchanged touches no network and
# exits in well under a second. Outputs: vmlinuz, initrd.img (gzip'd newc cpio), guest.stamp.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${RDS_QEMU_CACHE:-$repo/.cache/qemu}

# Modules the guest loads at boot; their dependencies (and softdeps such as crc32c) come from modules.dep.
boot_modules=(virtio_pci virtio_net virtio_console virtio-rng configfs nvme-tcp nvmet nvmet-tcp loop ext4
              crc32c)
# Modules copied but left for the kernel to load through /sbin/modprobe on first use (`mount -t xfs`):
# xfs alone takes 1-4 s to load under TCG, which a boot that never mounts xfs should not pay.
on_demand_modules=(xfs)
# Host programs copied into the guest with the shared libraries ldd lists. dash becomes /bin/sh, as on
# Debian: busybox's own sh runs its applets ahead of PATH, so `mke2fs` would be busybox's.
tools=(dash mke2fs mkfs.ext4 mkfs.ext3 e2fsck fsck.ext4 resize2fs tune2fs dumpe2fs
       mkfs.xfs xfs_growfs xfs_repair xfs_db xfs_admin blkid findmnt lsblk)
# command -> Debian package that provides it on the host.
declare -A host_packages=(
  [qemu-system-x86_64]=qemu-system-x86 [cpio]=cpio [depmod]=kmod [modprobe]=kmod
  [busybox-static]=busybox-static [mke2fs]=e2fsprogs [mkfs.xfs]=xfsprogs [blkid]=util-linux
  [findmnt]=util-linux [lsblk]=util-linux [flock]=util-linux [gzip]=gzip [sha256sum]=coreutils
  [dash]=dash
)

work=
log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

have() {
  case $1 in
    # The guest needs the static build: the dynamic one (package busybox) has the same path.
    busybox-static) [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 ;;
    *) PATH=$PATH:/usr/sbin:/sbin command -v "$1" >/dev/null ;;
  esac
}

apt_updated=
apt_update() {
  [[ -n $apt_updated ]] && return
  log "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  apt_updated=1
}

# Runs an apt-get command; a stale or missing package list is refreshed once and the command retried.
apt_retry() {
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt_update; fi
  "$@" || { apt_update; "$@"; }
}

ensure_host_packages() {
  local missing=() cmd
  for cmd in "${!host_packages[@]}"; do
    have "$cmd" || missing+=("${host_packages[$cmd]}")
  done
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  [[ $(id -u) == 0 ]] || die "missing host packages (${missing[*]}); rerun as root or install them"
  # Debian 12's qemu-system-x86 replaces a newer preinstalled qemu-utils; put qemu-img back afterwards.
  local had_qemu_utils=
  dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q 'ok installed' && had_qemu_utils=1
  log "installing ${missing[*]}"
  apt_retry apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
  if [[ -n $had_qemu_utils ]] && ! have qemu-img; then
    log "reinstalling qemu-utils (removed by qemu-system-x86)"
    apt_retry apt-get install -y -q --no-install-recommends qemu-utils >&2 \
      || die "reinstalling qemu-utils failed"
  fi
  for cmd in "${!host_packages[@]}"; do have "$cmd" || die "$cmd still missing after install"; done
}

download() {
  (cd "$1" && apt_retry apt-get download -q -o APT::Sandbox::User=root "$2" >&2) \
    || die "apt-get download $2 failed"
}

# Downloads linux-image-amd64 and the versioned image it depends on into $cache/debs (once).
fetch_kernel() {
  local debs=$cache/debs
  mkdir -p "$debs"
  if ! compgen -G "$debs/linux-image-[0-9]*.deb" >/dev/null; then
    local tmp
    tmp=$(mktemp -d "$cache/download.XXXXXX")
    # Runs when this function's command-substitution subshell exits, after `local tmp` has gone out
    # of scope (set -u), so the path is expanded now.
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    # apt's output goes to stderr: this function's stdout is its answer. The download runs as root
    # (no sandbox user) because the _apt user may not reach the cache directory.
    download "$tmp" linux-image-amd64
    local image
    image=$(dpkg-deb -f "$tmp"/linux-image-amd64_*.deb Depends | grep -o 'linux-image-[0-9][^ ,]*' | head -1)
    [[ -n $image ]] || die "cannot find the versioned kernel image that linux-image-amd64 depends on"
    download "$tmp" "$image"
    mv "$tmp"/"$image"_*.deb "$debs"/
  fi
  printf "%s\n" "$debs"/linux-image-[0-9]*.deb | sort -V | tail -1
}

# Copies a host program (keeping a symlink's name, which mke2fs reads to pick the filesystem type)
# and every shared library ldd lists for it.
copy_program() {
  local stage=$1 name=$2 path real dest lib
  path=$(PATH=$PATH:/usr/sbin:/sbin command -v "$name") || die "host program $name not found"
  real=$(readlink -f "$path")
  dest=$stage/usr/sbin
  [[ $path == */bin/* && $path != */sbin/* ]] && dest=$stage/usr/bin
  mkdir -p "$dest"
  # rm first: the destination may be a busybox applet link, and cp would write through it.
  rm -f "$dest/$name"
  if [[ -L $path ]]; then
    [[ -e $dest/$(basename "$real") && ! -L $dest/$(basename "$real") ]] \
      || { rm -f "$dest/$(basename "$real")"; cp "$real" "$dest/$(basename "$real")"; }
    ln -s "$(basename "$real")" "$dest/$name"
  else
    cp "$real" "$dest/$name"
  fi
  while read -r lib; do copy_library "$stage" "$lib"; done < <(shared_libraries "$real")
}

shared_libraries() {
  ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true
}

copy_library() {
  local stage=$1 lib=$2
  [[ -e $stage$lib ]] && return
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
}

# Prints the module files (relative to the module directory) needed for the named modules, in load
# order and each once, as modules.dep and modules.softdep give them.
module_files() {
  local kroot=$1 kver=$2 mod plan line path seen=" "
  shift 2
  for mod in "$@"; do
    plan=$(modprobe -d "$kroot" -S "$kver" --show-depends "$mod") || die "module $mod not found in $kver"
    while read -r line; do
      [[ $line == insmod\ * ]] || continue
      path=${line#insmod }; path=${path%% *}; path=${path#"$kroot/lib/modules/$kver/"}
      [[ $seen == *" $path "* ]] && continue
      seen+="$path "
      echo "$path"
    done <<<"$plan"
  done
}

build_initramfs() {
  local kroot=$1 kver=$2 stage=$3
  mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/rds-guest,proc,sys,dev,tmp,run,mnt,root}

  cp /bin/busybox "$stage/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list-full); do
    [[ $applet == */* && ! -e $stage/$applet ]] && ln -s /bin/busybox "$stage/$applet"
  done

  local files path
  files=$(module_files "$kroot" "$kver" "${boot_modules[@]}" "${on_demand_modules[@]}")
  for path in $files; do
    mkdir -p "$stage/lib/modules/$kver/$(dirname "$path")"
    cp "$kroot/lib/modules/$kver/$path" "$stage/lib/modules/$kver/$path"
  done
  cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/"
  depmod -b "$stage" "$kver"
  module_files "$kroot" "$kver" "${boot_modules[@]}" >"$stage/etc/rds-guest/modules.load"
  # What /init must find in /sys/module. crc32c is an alias (crc32c_generic or crc32c-intel, which
  # refuses some CPU models), so it is left out; ext4 cannot load without one of them anyway.
  local mod
  for mod in "${boot_modules[@]}"; do
    [[ $mod == crc32c ]] || echo "${mod//-/_}"
  done >"$stage/etc/rds-guest/modules.required"
  echo "$kver" >"$stage/etc/rds-guest/kernel-release"

  local tool
  for tool in "${tools[@]}"; do copy_program "$stage" "$tool"; done
  printf '%s\n' "${tools[@]}" >"$stage/etc/rds-guest/programs"
  rm "$stage/bin/sh"
  ln -s /usr/bin/dash "$stage/bin/sh"
  # Rust programs added at boot (GuestConfig::extra_files) link against libgcc_s besides libc.
  copy_library "$stage" "$(ldconfig -p | grep -o '/[^ ]*/libgcc_s.so.1' | head -1)"
  cp /etc/mke2fs.conf "$stage/etc/"
  ln -s /proc/mounts "$stage/etc/mtab"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$stage/etc/passwd"
  echo 'root:x:0:' >"$stage/etc/group"

  install -m 755 "$here/guest/init" "$stage/init"
  install -m 755 "$here/guest/agent" "$stage/sbin/rds-agent"
}

main() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9

  ensure_host_packages
  local deb
  deb=$(fetch_kernel)

  # Everything the image is made of; an unchanged fingerprint means the cached image is current.
  local fingerprint
  fingerprint=$( {
    sha256sum "$here/build-guest.sh" "$here/guest/init" "$here/guest/agent"
    basename "$deb"
    dpkg-query -W busybox-static dash e2fsprogs xfsprogs util-linux libc6 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1)
  if [[ -f $cache/vmlinuz && -f $cache/initrd.img \
        && $(cat "$cache/guest.stamp" 2>/dev/null) == "$fingerprint" ]]; then
    log "up to date ($cache)"
    return
  fi

  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "extracting $(basename "$deb")"
  dpkg-deb -x "$deb" "$work/kernel"
  local kver
  kver=$(ls "$work/kernel/lib/modules")
  depmod -b "$work/kernel" "$kver"

  log "building initramfs for $kver"
  build_initramfs "$work/kernel" "$kver" "$work/stage"
  (cd "$work/stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
    | gzip -1 >"$work/initrd.img"

  rm -f "$cache/guest.stamp"
  mv "$work/kernel/boot/vmlinuz-$kver" "$cache/vmlinuz"
  mv "$work/initrd.img" "$cache/initrd.img"
  echo "$fingerprint" >"$cache/guest.stamp"
  log "done: $cache/vmlinuz, $cache/initrd.img ($(du -h "$cache/initrd.img" | cut -f1))"
}

main "$@"
