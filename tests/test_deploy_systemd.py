"""``systemd/facecast.service``: it verifies, its exposure stays <= 3.0, and the agent really runs under
its two riskiest restrictions.

systemd is not PID 1 in CI, so the unit cannot be started here. What can run is checked for real:
``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` (Debian's ``systemd``
package, installed by ``deploy/ci-prepare.sh``), and the agent under the same syscall allow-list as
``SystemCallFilter=`` (built from ``systemd-analyze syscall-filter``, loaded with libseccomp, errno
EPERM like ``SystemCallErrorNumber=EPERM``) and under ``MemoryDenyWriteExecute=`` (the kernel's own
``PR_SET_MDWE``, same W^X rule), processing real frames with LiteRT/XNNPACK and OpenCV. If LiteRT
ever needs a JIT, this fails and the unit's ``MemoryDenyWriteExecute=yes`` must go.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_support import clip

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "facecast.service"
MAX_EXPOSURE = 3.0


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze missing: run deploy/ci-prepare.sh (apt-get install systemd)")
    return path


def unit_settings(key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip() for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")
    ]


def test_unit_verifies(tmp_path: Path) -> None:
    """``verify`` also checks that ExecStart's binary exists, which only holds on a device: point
    it at this checkout's ``facecast`` (the same entry point the venv in /opt/facecast has)."""
    facecast = Path(sys.executable).with_name("facecast")
    assert facecast.is_file(), facecast
    text = UNIT.read_text().replace("/opt/facecast/venv/bin/facecast", str(facecast))
    assert text != UNIT.read_text()
    unit = tmp_path / "facecast.service"
    unit.write_text(text)
    proc = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "facecast.service" not in proc.stderr, proc.stderr  # no warnings about our unit either


def test_exposure_at_most_3() -> None:
    proc = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for facecast\.service: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_unit_contract() -> None:
    """The settings the deployment and the agent rely on (a typo here would only show on a device)."""
    assert unit_settings("Type") == ["notify"]
    assert unit_settings("Restart") == ["on-failure"]
    assert unit_settings("WatchdogSec")
    assert unit_settings("LoadCredential") == ["mqtt_password:/etc/facecast/mqtt_password"]
    assert unit_settings("StateDirectory") == ["facecast"]
    assert unit_settings("ConfigurationDirectory") == ["facecast"]
    assert "/etc/facecast/config.yaml" in unit_settings("ExecStart")[0]
    assert unit_settings("MemoryDenyWriteExecute") == ["yes"]


def syscall_groups() -> dict[str, list[str]]:
    """Every ``@group`` -> its entries (syscalls and nested groups), as this systemd defines them."""
    out = subprocess.run(
        [analyze(), "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return groups


def expand(name: str, groups: dict[str, list[str]]) -> set[str]:
    if not name.startswith("@"):
        return {name}
    return set().union(*(expand(entry, groups) for entry in groups[name]))


def unit_syscall_allow_list() -> set[str]:
    """The unit's ``SystemCallFilter=`` lines: an allow-list, then ``~`` lines removed from it."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for value in unit_settings("SystemCallFilter"):
        deny = value.startswith("~")
        names = set().union(*(expand(n, groups) for n in value.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    return allowed


SANDBOX = r"""
import ctypes, ctypes.util, errno, json, mmap, os, sys
allowed, argv = json.loads(sys.argv[1]), sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)  # kernel < 6.3: no PR_SET_MDWE
seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = seccomp.seccomp_init(0x00050000 | errno.EPERM)  # SCMP_ACT_ERRNO(EPERM)
n = 0
for name in allowed:
    nr = seccomp.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0 and seccomp.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0) == 0:  # SCMP_ACT_ALLOW
        n += 1
assert seccomp.seccomp_load(ctx) == 0
# Prove both restrictions are in force before handing over to the agent.
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X mapping was allowed")
except PermissionError:
    pass
try:
    os.sched_setaffinity(0, os.sched_getaffinity(0))  # @resources, removed by the unit
    sys.exit("sched_setaffinity was allowed")
except PermissionError:
    pass
sys.stderr.write(f"sandbox: {n} syscalls allowed, W^X enforced\n")
os.execv(argv[0], argv)
"""


@pytest.mark.slow
def test_agent_runs_under_the_units_syscall_filter_and_wx_rule(tmp_path: Path, model_path: Path) -> None:
    allowed = unit_syscall_allow_list()
    assert {"read", "openat", "mmap", "ioctl", "socket", "connect"} <= allowed
    assert "sched_setaffinity" not in allowed and "mount" not in allowed
    facecast = str(Path(sys.executable).with_name("facecast"))
    source = clip("short_hamilton_clip")
    cmd = [facecast, "run", "--sink", "stdout", "--source", str(source), "--model", str(model_path)]
    cmd += ["--state-dir", str(tmp_path / "state"), "--max-frames", "8", "--device-id", "sandboxed"]
    proc = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", SANDBOX, json.dumps(sorted(allowed)), *cmd],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode == 77:
        pytest.skip("NOT RUN: this kernel has no PR_SET_MDWE (Linux < 6.3); W^X not checked")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sandbox:" in proc.stderr and "W^X enforced" in proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    events = [r for r in records if r["topic"].endswith("/frames")]  # the tracker adds its own topics
    assert len(events) == 8
    faces = [face for e in events for face in e["payload"]["faces"]]
    assert faces and all("emotion" in json.dumps(face) for face in faces)
