#!/usr/bin/env bash
# Boots the test guest (built by build-guest.sh) with a root shell on this terminal, for looking around
# by hand: the same kernel, modules and tools the tests get. Leave with `poweroff -f` or Ctrl-A X.
#   ci/qemu/run-guest.sh [HOSTPORT:GUESTPORT ...]   # forward 127.0.0.1:HOSTPORT to the guest's port
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${RDS_QEMU_CACHE:-$(cd "$here/../.." && pwd)/.cache/qemu}
bash "$here/build-guest.sh"

forwards=
for forward in "$@"; do
  [[ $forward =~ ^([0-9]+):([0-9]+)$ ]] || { echo "usage: $0 [HOSTPORT:GUESTPORT ...]" >&2; exit 2; }
  forwards+=",hostfwd=tcp:127.0.0.1:${BASH_REMATCH[1]}-:${BASH_REMATCH[2]}"
done

# The agent's port goes to a null device: nothing sends it commands, and it needs the port to start.
exec qemu-system-x86_64 -accel tcg -nodefaults -no-reboot -nographic -m 512 \
  -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" -append "console=ttyS0 quiet panic=-1 rds.shell" \
  -serial mon:stdio \
  -netdev "user,id=net0$forwards" -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \
  -device virtio-serial-pci -chardev null,id=agent -device virtserialport,chardev=agent,name=org.rds.agent
