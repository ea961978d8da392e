"""Frame sources: image folders (with broken files), video files, live grabbing, demo, errors."""

from __future__ import annotations

import sys
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from agent.detectors import create_detector
from agent.errors import SourceError
from agent.sources import open_source, redact_url
from agent.sources.demo import DemoSource
from agent.sources.files import ImageFolderSource, VideoFileSource
from agent.sources.live import LatestFrameSource
from tests.agent_support import CLIPS, HttpCamera, astronaut_bgr, clip, read_frames


@pytest.fixture
def image_folder(tmp_path):
    img = astronaut_bgr()
    cv2.imwrite(str(tmp_path / "a_first.jpg"), img)
    (tmp_path / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    (tmp_path / "c_empty.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "d_second.png"), cv2.resize(img, (256, 256)))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_skips_and_counts_unreadable_images(image_folder):
    source = open_source(str(image_folder))
    assert isinstance(source, ImageFolderSource) and not source.live
    frames = list(source)
    assert [f.file for f in frames] == ["a_first.jpg", "d_second.png"]
    assert frames[0].image.shape == (512, 512, 3)
    assert frames[1].image.shape == (256, 256, 3)
    assert source.stats() == {"read": 2, "skipped": 2}


def test_folder_without_images(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path))


def test_video_file_yields_every_frame():
    path = clip("short_hamilton_clip")
    expected = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource)
    indices = [f.index for f in source]
    assert indices == list(range(len(indices)))
    assert abs(len(indices) - expected) <= 2
    assert source.stats()["read"] == len(indices)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_video_frame_size(name):
    source = open_source(str(clip(name)))
    frame = next(iter(source))
    source.close()
    assert (frame.image.shape[1], frame.image.shape[0]) == CLIPS[name]


def test_close_stops_a_file_source_early():
    source = open_source(str(clip("news_interview_portrait")))
    count = 0
    for _ in source:
        count += 1
        if count == 5:
            source.close()
    assert count == 5


def test_unreadable_sources_are_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        open_source(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError) as err:
        open_source(str(junk))
    assert "junk.mp4" in str(err.value) and "\n" not in str(err.value)


def test_picamera2_off_a_pi_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(SourceError) as err:
        open_source("picamera2")
    assert "picamera2" in str(err.value) and "\n" not in str(err.value)


class _IspCamera:
    """Stands in for picamera2 (which cannot run off a Pi): the ISP's scaled frames of a real clip.

    ``capture_array`` returns what picamera2 returns for the configured stream: an RGB888 main
    stream is HxWx3 in B, G, R byte order; a YUV420 stream is the (H*3/2)xW I420 planes."""

    def __init__(self, configs: list[dict]) -> None:
        self.configs = configs
        self._frames = read_frames("facenet_pytorch_video", list(range(0, 60, 6)), max_width=640)
        self._i = 0
        self._streams: dict = {}

    def create_video_configuration(self, **streams):
        self.configs.append(streams)
        return streams

    def configure(self, config) -> None:
        self._streams = config

    def start(self) -> None:
        pass

    def capture_array(self, name="main"):
        bgr = self._frames[self._i % len(self._frames)]
        self._i += 1
        fmt = self._streams[name].get("format", "XBGR8888")
        if fmt == "RGB888":
            return bgr.copy()
        assert fmt == "YUV420", fmt
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_picamera2_hands_the_detector_colour_frames_from_the_isp(monkeypatch):
    """BlazeFace needs colour: on this clip it finds almost no face on the luma plane alone."""
    configs: list[dict] = []
    monkeypatch.setitem(sys.modules, "picamera2", SimpleNamespace(Picamera2=lambda: _IspCamera(configs)))
    source = open_source("picamera2", camera_width=640, camera_height=360)
    try:
        frames = []
        for frame in source:
            if frame.image is not None:
                frames.append(frame.image)
            if len(frames) == 10:
                break
    finally:
        source.close()
    assert configs == [{"main": {"size": (640, 360), "format": "RGB888"}}]
    expected = _IspCamera([])._frames
    assert all(f.shape == (360, 640, 3) and f.flags.c_contiguous for f in frames)
    # Live sources may drop frames, so match each handed-out frame to one of the camera's.
    assert all(any(np.array_equal(f, e) for e in expected) for f in frames)

    detector = create_detector()
    colour = sum(len(detector.detect(f)) for f in frames)
    grays = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) for f in frames]
    luma = sum(len(detector.detect(g)) for g in grays)
    assert colour >= 2 * len(frames)  # two or more people face the camera in every frame
    assert luma < colour / 2


def test_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open"):
        open_source("/dev/video97")


def test_stream_urls_are_redacted():
    assert redact_url("rtsp://cam:hunter2@10.0.0.5:554/live") == "rtsp://cam:***@10.0.0.5:554/live"
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


class ScriptedCapture:
    """A stand-in *device* (no camera exists here): yields numbered frames, can die after N reads."""

    def __init__(self, die_after: int | None = None, period: float = 0.001) -> None:
        self.n = 0
        self.die_after = die_after
        self.period = period
        self.released = False

    def read(self):
        time.sleep(self.period)
        if self.die_after is not None and self.n >= self.die_after:
            return None
        self.n += 1
        return np.full((8, 8, 3), self.n % 256, np.uint8)

    def release(self):
        self.released = True


def test_live_source_keeps_only_the_newest_frame():
    source = LatestFrameSource("scripted", lambda: ScriptedCapture(period=0.001))
    got = []
    for frame in source:
        got.append(frame.index)
        time.sleep(0.02)  # a slow consumer
        if len(got) == 5:
            break
    source.close()
    stats = source.stats()
    assert stats["dropped"] > 0
    assert got == sorted(got) and len(set(got)) == len(got)
    assert got[-1] - got[0] > 4  # frames were skipped, not queued


def _handed_out_in(source: LatestFrameSource, seconds: float) -> list[float]:
    """Times at which a consumer that never waits got real frames."""
    times: list[float] = []
    end = time.monotonic() + seconds
    for frame in source:
        if frame.image is not None:
            times.append(time.monotonic())
        if time.monotonic() > end:
            break
    source.close()
    return times


def test_max_fps_caps_a_live_source_to_the_newest_frame_at_that_pace():
    uncapped = _handed_out_in(LatestFrameSource("fast", lambda: ScriptedCapture(period=0.002)), 1.0)
    capped_source = LatestFrameSource("fast", lambda: ScriptedCapture(period=0.002), max_fps=20)
    capped = _handed_out_in(capped_source, 1.0)
    assert len(uncapped) > 100  # the scripted device delivers ~400 frames a second
    assert 17 <= len(capped) <= 22
    gaps = np.diff(capped)
    assert np.median(gaps) == pytest.approx(0.05, abs=0.01) and gaps.min() > 0.03  # paced, no bursts
    assert capped_source.stats()["dropped"] > 100  # the frames in between were skipped, not queued


def test_a_slow_max_fps_still_ticks_idle_frames_for_the_heartbeat():
    source = LatestFrameSource("slow", lambda: ScriptedCapture(period=0.002), max_fps=0.5, idle_tick=0.1)
    real = idle = 0
    end = time.monotonic() + 1.0
    for frame in source:
        real += frame.image is not None
        idle += frame.idle
        if time.monotonic() > end:
            break
    source.close()
    assert real == 1 and idle >= 5  # one frame per 2 s, and the loop still turns about every 0.1 s


def test_max_fps_leaves_files_whole():
    source = open_source(str(clip("short_hamilton_clip")), max_fps=1)
    start = time.monotonic()
    assert sum(1 for _ in source) == 275 and time.monotonic() - start < 30


def test_live_source_reopens_with_backoff_after_the_device_disappears():
    opened = []
    attempts = {"n": 0}

    def opener():
        attempts["n"] += 1
        if len(opened) == 1 and attempts["n"] < 4:  # the device is gone for two attempts
            from agent.errors import SourceError as Gone

            raise Gone("device gone")
        cap = ScriptedCapture(die_after=3 if not opened else None)
        opened.append(cap)
        return cap

    source = LatestFrameSource("flaky", opener, backoff_initial=0.01, backoff_max=0.05)
    seen = 0
    deadline = time.monotonic() + 5
    for _ in source:
        seen += 1
        if (len(opened) >= 2 and seen >= 6) or time.monotonic() > deadline:
            break
    source.close()
    stats = source.stats()
    assert stats["reconnects"] == 1
    assert stats["failures"] >= 1
    assert opened[0].released
    assert attempts["n"] >= 4
    assert seen >= 6


def test_live_source_close_from_another_thread_ends_iteration():
    source = LatestFrameSource("scripted", lambda: ScriptedCapture(period=0.005))
    threading.Timer(0.1, source.close).start()
    start = time.monotonic()
    for _ in source:
        pass
    assert time.monotonic() - start < 2.0


def test_demo_source_has_one_then_two_faces():
    detector = create_detector("blazeface")  # the default: short range, full range when it sees nothing
    source = DemoSource(frames=40)
    counts = [len(detector.detect(f.image)) for f in source]
    assert len(counts) == 40
    assert max(counts[:20]) == 1 and sum(c == 1 for c in counts[:20]) >= 15
    assert sum(c == 2 for c in counts[20:]) >= 15


def test_stream_errors_never_show_the_password():
    with pytest.raises(SourceError) as err:
        open_source("rtsp://viewer:topsecret@127.0.0.1:9/live")
    assert "topsecret" not in str(err.value)
    assert "viewer:***@127.0.0.1:9" in str(err.value)


@pytest.fixture
def http_stream(tmp_path):
    """60 frames of a dataset clip served as an MJPEG stream over local HTTP: a real network stream
    for OpenCV's FFmpeg backend."""
    camera = HttpCamera(tmp_path, clip("short_hamilton_clip"), frames=60)
    camera.plug_in()
    yield camera.url
    camera.unplug()


def test_http_stream_is_live_drops_frames_and_reconnects_at_the_end(http_stream):
    source = open_source(http_stream)
    assert source.live
    shapes, deadline = set(), time.monotonic() + 30
    try:
        for frame in source:
            if not frame.idle:
                shapes.add(frame.image.shape)
                time.sleep(0.01)  # slower than decode: the grabber must drop, not queue
            if source.stats()["reconnects"] >= 1 or time.monotonic() > deadline:
                break
    finally:
        source.close()
    stats = source.stats()
    assert shapes == {(360, 640, 3)}
    assert stats["dropped"] > 0
    assert stats["failures"] >= 1 and stats["reconnects"] >= 1  # end of stream -> reopened


def test_a_video_source_keeps_no_hold_on_a_frame_it_has_handed_out():
    """The pipeline replaces a 1080p frame by its luma as soon as it has the detector's copy; the
    source must not keep the 6 MB colour array alive meanwhile (measured: 3.5 MB of peak RSS)."""
    import gc
    import weakref

    frames = iter(VideoFileSource(clip("short_hamilton_clip")))
    frame = next(frames)
    colour = weakref.ref(frame.image)
    frame.image = None
    gc.collect()
    assert colour() is None
    assert next(frames).image.shape == (360, 640, 3)


def test_a_video_source_decodes_into_a_buffer_only_once_it_is_handed_back():
    """Reuse saves a 6 MB allocation per 1080p frame, but a frame still held downstream (a queued
    colour frame, a hook's copy) must never be overwritten by the next decode."""
    source = VideoFileSource(clip("short_hamilton_clip"))
    frames = iter(source)
    first = next(frames)
    kept = first.image.copy()
    second = next(frames)  # not handed back: a new array, the first frame untouched
    assert not np.shares_memory(first.image, second.image)
    assert np.array_equal(first.image, kept) and not np.array_equal(second.image, kept)
    buffer = second.image
    second.recycle(buffer)
    third = next(frames)
    assert third.image is buffer  # decoded in place
    assert not np.array_equal(third.image, kept)
    assert np.array_equal(first.image, kept)
    source.close()


def test_a_folder_source_keeps_no_hold_on_an_image_it_has_handed_out(tmp_path):
    import gc
    import weakref

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), astronaut_bgr())
    images = iter(ImageFolderSource(tmp_path))
    frame = next(images)
    pixels = weakref.ref(frame.image)
    frame.image = None
    gc.collect()
    assert pixels() is None
    assert next(images).file == "b.png"
