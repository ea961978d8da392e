#!/usr/bin/env bash
# One command to deploy facecast: build the wheel from this checkout, then run the playbook.
#   deploy/deploy.sh -i deploy/inventory.ini [more ansible-playbook options, e.g. --ask-vault-pass]
#   deploy/deploy.sh --prepare-only     # just the controller venv and the wheel (CI, tests)
# The controller tools live in their own venv ($FACECAST_DEPLOY_VENV, default deploy/.venv), never
# in the agent's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="${FACECAST_DEPLOY_VENV:-$here/.venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp="$venv/.facecast-deploy-$(sha1sum "$here/requirements.txt" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "facecast: installing the deploy tools into $venv (first run only)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  touch "$stamp"
fi

# A reproducible wheel (fixed timestamps), so re-deploying an unchanged checkout changes nothing.
# Built from a copy of the tracked and unignored files: no stale build/ dir, the checkout untouched.
build="$here/.build"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
mkdir -p "$build"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$src"
rm -f "$build"/facecast-*.whl
SOURCE_DATE_EPOCH=315532800 \
  "$venv/bin/pip" wheel -q --no-deps --no-build-isolation --wheel-dir "$build" "$src" >&2

if [ "${1:-}" = "--prepare-only" ]; then
  exit 0
fi
export ANSIBLE_CONFIG="$here/ansible.cfg"
"$venv/bin/ansible-playbook" "$here/site.yml" "$@"
