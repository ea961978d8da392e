#!/usr/bin/env bash
# Everything tests/test_deploy_*.py need on a clean Debian bookworm CI machine (run as root;
# idempotent: a second run only checks). .ci/run calls it before the test suite.
#   1. apt: systemd (systemd-analyze), debootstrap, qemu-user-static, binfmt-support, zstd
#   2. binfmt_misc mounted and qemu-aarch64 enabled: arm64 binaries run under emulation
#   3. the controller tools (deploy/.venv: ansible, ansible-lint) and the facecast wheel
#   4. the arm64 Debian bookworm root (Raspberry Pi OS Bookworm's base), debootstrapped once and
#      cached as $FACECAST_TEST_CACHE/bookworm-arm64-<hash of the package list>.tar.zst, and the
#      same for amd64 (the Jetson stand-in: the role's Jetson route is the same on any architecture,
#      and run natively its apt install of python3-opencv takes a minute, not 12 under qemu)
# Heavy steps run under nice/ionice ($FACECAST_NICE) so they do not slow other work on the box.
set -euo pipefail
# update-binfmts, debootstrap and chroot live in sbin, which a minimal non-login PATH leaves out.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${FACECAST_TEST_CACHE:-/var/cache/facecast-test}"
nice_cmd=(${FACECAST_NICE:-nice -n 19 ionice -c3})
# Keep in sync with tests/test_deploy_ansible.py (ROOT_PACKAGES): the key names the tarball.
suite=bookworm
packages="python3,python3-apt,systemd"
tarball_for() {
  local key
  key="$(printf '%s %s %s %s' "$suite" "$1" minbase "$packages" | sha256sum | cut -c1-16)"
  echo "$cache/$suite-$1-$key.tar.zst"
}

if [ "$(id -u)" != 0 ]; then
  echo "ci-prepare: needs root (apt-get, binfmt_misc, debootstrap)" >&2
  exit 1
fi

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v zstd >/dev/null || need+=(zstd)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci-prepare: apt-get install ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${nice_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || true
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "ci-prepare: ERROR: cannot enable qemu-aarch64 in binfmt_misc (a container without" \
       "privileges?); the arm64 deploy test cannot run here" >&2
  exit 1
fi

"$here/deploy.sh" --prepare-only

for arch in arm64 amd64; do
  tarball="$(tarball_for "$arch")"
  [ -f "$tarball" ] && continue
  echo "ci-prepare: debootstrapping the $arch $suite root (once; arm64 under qemu ~4 min, amd64 ~1)" >&2
  mkdir -p "$cache"
  work="$cache/build-$arch"
  rm -rf "$work"
  start=$(date +%s)
  "${nice_cmd[@]}" debootstrap --arch="$arch" --variant=minbase --include="$packages" \
    "$suite" "$work" "${FACECAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap-$arch.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap-$arch.log" >&2; exit 1; }
  rm -rf "$work"/var/cache/apt/archives/*.deb
  "${nice_cmd[@]}" tar --numeric-owner -C "$work" -cf - . | zstd -q -T0 -3 -o "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  rm -rf "$work"
  echo "ci-prepare: root cached as $tarball after $(( $(date +%s) - start ))s" >&2
done
echo "ci-prepare: ready ($(tarball_for arm64), $(tarball_for amd64))" >&2
