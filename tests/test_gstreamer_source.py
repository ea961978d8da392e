"""GStreamer sources (``gst:<pipeline>``, ``csi:N``), run for real through OpenCV's GStreamer backend.

A Jetson owner runs the agent on JetPack's OpenCV in a venv made with ``--system-site-packages``
and the ``agent-syscv`` extra. Debian's ``python3-opencv`` is built the same way (with GStreamer,
against NumPy 1.x), so ``tests/gstreamer/ci-prepare.sh`` builds exactly that venv (``.venv-syscv``)
and the ``syscv`` tests run the real ``facecast`` command in it: real pipelines (a dataset clip
through ``filesrc ! decodebin``, ``videotestsrc``), real events, a real notify socket. The CSI
pipeline cannot run without a Jetson; its string and its failure off a Jetson are checked.

Nothing here is skipped quietly: without that venv the ``syscv`` tests FAIL with what to run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.config import load_config
from agent.sources import redact_url
from agent.sources.gstreamer import CsiCamera, csi_pipeline, has_gstreamer, parse_csi
from tests.agent_support import REPO, assert_one_line_error, clip, error_lines, run_cli

SYSCV_VENV = Path(os.environ.get("FACECAST_SYSCV_VENV") or REPO / ".venv-syscv")
PREPARE = "run tests/gstreamer/ci-prepare.sh (as root on a clean machine) first"
#: The form NVIDIA documents for OpenCV on a Jetson, written out by hand (not built by the code).
DOCUMENTED_CSI = (
    "nvarguscamerasrc sensor-id={sensor} ! "
    "video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
    "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
    "appsink drop=true max-buffers=1"
)

syscv = pytest.mark.syscv


# --- the CSI shortcut -----------------------------------------------------------------------------


def test_csi_pipeline_is_the_documented_one(tmp_path: Path) -> None:
    default = DOCUMENTED_CSI.format(sensor=0, width=1280, height=720, fps=30)
    assert csi_pipeline(parse_csi("csi:0")) == default
    assert csi_pipeline(CsiCamera()) in (REPO / "README.md").read_text(encoding="utf-8")
    # The config section alone selects the camera; csi:N picks another sensor with its mode.
    config_file = tmp_path / "config.yaml"
    config_file.write_text("source: {csi: {sensor_id: 1, width: 1920, height: 1080, fps: 30}}\n")
    source = load_config(config_file, environ={}).source
    assert source.uri == "csi"
    settings = source.to_dict()["csi"]
    assert csi_pipeline(parse_csi(source.uri, settings)) == DOCUMENTED_CSI.format(
        sensor=1, width=1920, height=1080, fps=30
    )
    assert csi_pipeline(parse_csi("csi:2", settings)) == DOCUMENTED_CSI.format(
        sensor=2, width=1920, height=1080, fps=30
    )
    # A flag or environment variable naming another source still wins over the section.
    assert load_config(config_file, environ={"FACECAST_SOURCE__URI": "clip.mp4"}).source.uri == "clip.mp4"


def test_a_bad_csi_or_gst_spec_is_one_line_before_any_camera_is_touched(tmp_path: Path) -> None:
    for spec, needle in (("csi:left", "csi:N"), ("gst:videotestsrc ! fakesink", "must end in appsink")):
        proc = run_cli("run", "--source", spec, "--sink", "stdout", "--state-dir", str(tmp_path))
        assert_one_line_error(proc, needle)


def test_passwords_in_a_pipeline_are_masked() -> None:
    spec = "gst:rtspsrc location=rtsp://cam:hunter2@10.0.0.5:554/live latency=0 ! decodebin ! appsink"
    assert redact_url(spec) == (
        "gst:rtspsrc location=rtsp://cam:***@10.0.0.5:554/live latency=0 ! decodebin ! appsink"
    )


# --- an OpenCV without GStreamer (PyPI's wheels) --------------------------------------------------


def test_gst_source_on_an_opencv_without_gstreamer_says_what_to_install(tmp_path: Path) -> None:
    if has_gstreamer():
        pytest.fail(f"this test needs PyPI's OpenCV wheel (no GStreamer); {cv2.__file__} has it")
    proc = run_cli(
        "run", "--source", "gst:videotestsrc ! videoconvert ! appsink", "--sink", "stdout",
        "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1
    line = assert_one_line_error(proc, "GStreamer", "--system-site-packages", "facecast[agent-syscv]")
    assert cv2.__version__ in line  # it names the cv2 it found


# --- a system OpenCV with GStreamer: the agent-syscv venv -----------------------------------------


@pytest.fixture(scope="module")
def facecast_syscv() -> Path:
    exe = SYSCV_VENV / "bin" / "facecast"
    if not exe.is_file():
        pytest.fail(f"{exe} missing: {PREPARE}")
    return exe


def syscv_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACECAST_", "PYTHON"))}
    env.update(extra)
    return env


def run_syscv(exe: Path, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=syscv_env(**env), check=False
    )


def records(stdout: str, subtopic: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [r["payload"] for r in lines if r["topic"].endswith("/" + subtopic)]


@syscv
def test_syscv_venv_uses_the_system_opencv_with_gstreamer(facecast_syscv: Path) -> None:
    proc = subprocess.run(
        [str(facecast_syscv.with_name("python")), "-c",
         "import cv2, numpy; print(cv2.__file__, cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER),"
         " numpy.__version__)"],
        capture_output=True, text=True, timeout=60, check=False, env=syscv_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    where, backend, numpy_version = proc.stdout.split()
    assert where.startswith("/usr/lib/python3/dist-packages/"), where  # no OpenCV wheel in the venv
    assert backend == "True" and numpy_version.startswith("1.")


@syscv
def test_a_file_pipeline_feeds_the_agent_real_faces(facecast_syscv: Path, tmp_path: Path) -> None:
    pipeline = f"filesrc location={clip('short_hamilton_clip')} ! decodebin ! videoconvert ! appsink"
    proc = run_syscv(
        facecast_syscv, "run", "--source", f"gst:{pipeline}", "--sink", "stdout", "--max-frames", "6",
        "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = records(proc.stdout, "frames")
    assert len(frames) >= 4, proc.stdout  # frames with a face (the clip's first frames all have one)
    assert {(f["frame"]["width"], f["frame"]["height"]) for f in frames} == {(640, 360)}
    assert all(f["faces"] for f in frames)
    assert f"source=gst:{pipeline}" in proc.stderr  # the pipeline, as given, is what the log names


@syscv
def test_videotestsrc_is_paced_by_max_fps_keeps_the_newest_and_reopens_at_its_end(
    facecast_syscv: Path, tmp_path: Path
) -> None:
    # 30 frames a second, 45 frames (1.5 s) per run; the agent takes 5 a second for 2.4 s.
    pipeline = (
        "videotestsrc num-buffers=45 ! video/x-raw,width=320,height=240,framerate=30/1 ! "
        "videoconvert ! appsink"
    )
    proc = run_syscv(
        facecast_syscv, "run", "--source", f"gst:{pipeline}", "--sink", "stdout", "--max-fps", "5",
        "--publish-empty", "--max-frames", "12", "--state-dir", str(tmp_path),
        FACECAST_EVENTS__STATS_INTERVAL_S="0.1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = records(proc.stdout, "frames")
    assert len(frames) == 12 and {(f["frame"]["width"], f["frame"]["height"]) for f in frames} == {(320, 240)}
    # Frame indices count every frame the pipeline gave: the gaps are the frames dropped for max_fps.
    index_gaps = np.diff([f["frame"]["index"] for f in frames])
    assert index_gaps.min() >= 1 and statistics.median(index_gaps) >= 4, index_gaps
    source = records(proc.stdout, "stats")[-1]["source"]
    assert source["dropped"] > 20, source
    assert source["failures"] >= 1 and source["reconnects"] >= 1, source  # end of stream -> reopened


class NotifySocket:
    """systemd's side of ``$NOTIFY_SOCKET``: every datagram, with its arrival time."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, state: str, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for t, m in self.messages if state in m.split("\n") and since <= t <= until]


class LineReader:
    """Reads the agent's stdout in a thread: frame events with their arrival times."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.frames: list[float] = []
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            if line.strip() and json.loads(line)["topic"].endswith("/frames"):
                self.frames.append(time.monotonic())

    def since(self, t: float) -> int:
        return sum(1 for x in self.frames if x >= t)


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fc-gst-", dir="/tmp") as d:  # AF_UNIX paths are short
        yield Path(d)


@syscv
def test_a_pipeline_outage_keeps_the_watchdog_fed_and_the_pipeline_comes_back(
    facecast_syscv: Path, notify_dir: Path, tmp_path: Path
) -> None:
    """The pipeline's file disappears (a camera unplugged): the agent keeps pinging the watchdog
    while reopening with backoff, and frames flow again once it is back."""
    video = tmp_path / "camera.avi"
    cap, writer = cv2.VideoCapture(str(clip("short_hamilton_clip"))), None
    for _ in range(25):  # one second at 25 fps, every frame with a face
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, frame.shape[1::-1])
        writer.write(frame)
    assert writer is not None
    writer.release()
    cap.release()
    notify = NotifySocket(notify_dir)
    env = syscv_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000")  # a ping every 0.5 s at most
    proc = subprocess.Popen(
        [str(facecast_syscv), "run", "--source",
         f"gst:filesrc location={video} ! decodebin ! videoconvert ! appsink",
         "--sink", "stdout", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        reader = LineReader(proc)
        deadline = time.monotonic() + 90
        while not (notify.times("READY=1") and reader.since(0) >= 3) and time.monotonic() < deadline:
            notify.collect(0.2)
        assert notify.times("READY=1") and reader.since(0) >= 3, "no frames from the pipeline"
        video.rename(video.with_suffix(".gone"))  # the play under way ends; every reopen fails
        gone = time.monotonic()
        notify.collect(6.0)
        quiet_from = gone + 2.0  # the play that had the file open has ended by then
        assert reader.since(quiet_from) == 0, "frames while the pipeline's file was gone"
        pings = notify.times("WATCHDOG=1", since=quiet_from)
        assert len(pings) >= 3, f"the watchdog starved during the outage: {notify.messages[-10:]}"
        video.with_suffix(".gone").rename(video)
        back = time.monotonic()
        while reader.since(back) < 3 and time.monotonic() < back + 30:
            notify.collect(0.2)
        assert reader.since(back) >= 3, "the pipeline was not reopened"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        notify.collect(0.3)
        assert notify.times("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "reopened" in stderr, stderr[-3000:]


@syscv
def test_csi_off_a_jetson_fails_in_one_line_after_naming_its_pipeline(
    facecast_syscv: Path, tmp_path: Path
) -> None:
    """No nvarguscamerasrc here: GStreamer really parses the CSI pipeline and refuses it, at once
    (OpenCV alone would wait forever on what remains of it)."""
    start = time.monotonic()
    proc = run_syscv(
        facecast_syscv,
        "run",
        "--source",
        "csi:0",
        "--sink",
        "stdout",
        "--state-dir",
        str(tmp_path),
        timeout=60,
    )
    assert time.monotonic() - start < 30
    assert_one_line_error(proc, "cannot open csi:0", 'no element "nvarguscamerasrc"', "is this a Jetson?")
    documented = DOCUMENTED_CSI.format(sensor=0, width=1280, height=720, fps=30)
    assert f"csi:0 is the GStreamer pipeline {documented}" in proc.stderr


@syscv
def test_numpy_2_under_the_system_opencv_is_one_line_saying_what_to_do(
    facecast_syscv: Path, tmp_path: Path
) -> None:
    """What `pip install -U numpy` does to such a venv: NumPy 2 (this test run's own) in front."""
    import numpy

    if not numpy.__version__.startswith("2."):
        pytest.fail(f"this test borrows the test venv's NumPy 2; it has {numpy.__version__}")
    shadow = tmp_path / "numpy2"
    shadow.mkdir()
    installed = Path(numpy.__file__).parent
    for name in ("numpy", "numpy.libs"):
        if (installed.parent / name).exists():
            (shadow / name).symlink_to(installed.parent / name)
    proc = run_syscv(
        facecast_syscv, "run", "--source", "gst:videotestsrc ! videoconvert ! appsink", "--sink", "stdout",
        "--state-dir", str(tmp_path / "state"), PYTHONPATH=str(shadow),
    )  # fmt: skip
    assert proc.returncode == 1
    line = assert_one_line_error(proc, "NumPy 1.x", numpy.__version__, "pip install 'numpy<2'")
    assert "/usr/lib/python3/dist-packages/cv2" in line
    assert "compiled using NumPy 1.x" not in proc.stderr  # NumPy's own dozen lines are kept back
    assert error_lines(proc.stderr) == [line]
