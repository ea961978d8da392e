#!/usr/bin/env bash
# Everything tests/test_deploy_*.py need on a clean Debian bookworm CI machine (run as root;
# idempotent: a second run only checks). .ci/run calls it before the test suite.
#   1. apt: systemd (systemd-analyze), debootstrap, qemu-user-static, binfmt-support, zstd
#   2. binfmt_misc mounted and qemu-aarch64 enabled: arm64 binaries run under emulation
#   3. the controller tools (deploy/.venv: ansible, ansible-lint) and the facecast wheel
#   4. the arm64 Debian bookworm root (Raspberry Pi OS Bookworm's base), debootstrapped once and
#      cached as $FACECAST_TEST_CACHE/bookworm-arm64-<hash of the package list>.tar.zst
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
key="$(printf '%s %s %s %s' "$suite" arm64 minbase "$packages" | sha256sum | cut -c1-16)"
tarball="$cache/$suite-arm64-$key.tar.zst"

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

if [ ! -f "$tarball" ]; then
  echo "ci-prepare: debootstrapping the arm64 $suite root (once; ~4 min)" >&2
  mkdir -p "$cache"
  work="$cache/build-$key"
  rm -rf "$work"
  start=$(date +%s)
  "${nice_cmd[@]}" debootstrap --arch=arm64 --variant=minbase --include="$packages" \
    "$suite" "$work" "${FACECAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap-$key.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap-$key.log" >&2; exit 1; }
  rm -rf "$work"/var/cache/apt/archives/*.deb
  "${nice_cmd[@]}" tar --numeric-owner -C "$work" -cf - . | zstd -q -T0 -3 -o "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  rm -rf "$work"
  echo "ci-prepare: root cached as $tarball after $(( $(date +%s) - start ))s" >&2
fi
echo "ci-prepare: ready ($tarball)" >&2
