"""Shared helpers for the agent tests (the fixtures, e.g. ``model_path``, are in conftest.py).

Datasets are referenced in place (never copied): ``<repo>/../shared/datasets`` or $FACECAST_DATASETS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("FACECAST_DATASETS") or REPO.parent / "shared" / "datasets")
VIDEOS = DATASETS / "videos"
CLIPS = {
    "short_hamilton_clip": (640, 360),
    "facenet_pytorch_video": (1920, 1080),
    "news_interview_portrait": (360, 640),
}


def clip(name: str) -> Path:
    path = VIDEOS / f"{name}.mp4"
    if not path.is_file():
        pytest.skip(f"dataset clip missing: {path} (set FACECAST_DATASETS)")
    return path


def read_frames(name: str, indices: list[int], max_width: int = 0) -> list[np.ndarray]:
    """Decode the given frame indices of a clip (real decode, no fixtures on disk)."""
    cap = cv2.VideoCapture(str(clip(name)))
    wanted, out, i = set(indices), [], 0
    while wanted:
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            if max_width and frame.shape[1] > max_width:
                h = round(frame.shape[0] * max_width / frame.shape[1])
                frame = cv2.resize(frame, (max_width, h), interpolation=cv2.INTER_AREA)
            out.append(frame)
            wanted.discard(i)
        i += 1
    cap.release()
    return out



def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpCamera:
    """A network camera that can be unplugged and plugged back in: ``frames`` frames of a real clip
    as MJPEG-in-AVI (readable without seeking) served over local HTTP, which OpenCV's FFmpeg backend
    reads as it would an IP camera. The port is fixed, so the camera comes back at the same URL."""

    def __init__(self, folder: Path, source: Path, frames: int) -> None:
        cap = cv2.VideoCapture(str(source))
        writer = None
        for _ in range(frames):
            ok, frame = cap.read()
            assert ok, f"{source} has fewer than {frames} frames"
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(
                    str(folder / "live.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (w, h)
                )
            writer.write(frame)
        assert writer is not None
        writer.release()
        cap.release()
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.avi"
        self._server: Any = None

    def plug_in(self) -> None:
        import functools
        import http.server
        import threading

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(self.folder))
        handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def unplug(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def astronaut_bgr() -> np.ndarray:
    from agent.sources.demo import astronaut_bgr as load

    return load()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agent.cli ARGS`` in a subprocess (the real entry point, real exit status)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(cwd or REPO),
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    """Lines the CLI itself wrote (runtime libraries may add their own INFO chatter)."""
    return [line for line in stderr.splitlines() if line.startswith("facecast:")]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("facecast: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def payloads(stdout: str) -> list[dict[str, Any]]:
    """The frame-event payloads from ``--sink stdout`` JSON lines (other topics, e.g. the tracker's
    ``events``/``presence``, are left out)."""
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [r["payload"] for r in records if r["topic"].endswith("/frames")]
