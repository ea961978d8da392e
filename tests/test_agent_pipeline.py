"""The frame loop with real stages: corrupt frames, hooks, stop(), and events that validate."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from agent.classifier import load_classifier
from agent.comms.stdout import StdoutPublisher
from agent.detectors import create_detector
from agent.events import SeqAllocator, load_schema
from agent.pipeline import Pipeline, PipelineHooks, PipelineOptions, luma_reduction
from agent.sources.base import Frame
from agent.sources.demo import DemoSource
from tests.agent_support import astronaut_bgr, clip

STATS_SCHEMA = Path(__file__).resolve().parents[1] / "agent" / "schema" / "stats.schema.json"


class ListSource:
    """A real in-memory frame source (e.g. frames already decoded elsewhere)."""

    name = "list"
    live = False

    def __init__(self, images):
        self.images = images
        self.closed = False

    def __iter__(self):
        for i, image in enumerate(self.images):
            if self.closed:
                return
            yield Frame(index=i, timestamp=time.time(), image=image)

    def close(self):
        self.closed = True

    def stats(self):
        return {"read": len(self.images)}


@pytest.fixture(scope="module")
def stages(model_path):
    return create_detector("blazeface"), load_classifier(model_path)


def make(stages, source, tmp_path, **opts):
    out = io.StringIO()
    pub = StdoutPublisher("test-dev", stream=out)
    pub.start()
    detector, classifier = stages
    hooks = opts.pop("hooks", None)
    pipeline = Pipeline(
        source,
        detector,
        classifier,
        pub,
        SeqAllocator(tmp_path),
        PipelineOptions(device_id="test-dev", **opts),
        hooks,
    )
    return pipeline, out


def events(out):
    return [json.loads(line)["payload"] for line in out.getvalue().splitlines()]


def vanishing_camera(frames: int):
    """An opener for LatestFrameSource: a scripted device (no camera exists here) that delivers
    ``frames`` frames, then dies and can never be reopened."""
    from agent.errors import SourceError

    class Camera:
        def __init__(self):
            self.n = 0

        def read(self):
            time.sleep(0.01)
            self.n += 1
            return astronaut_bgr() if self.n <= frames else None

        def release(self):
            pass

    opened = []

    def opener():
        if opened:
            raise SourceError("gone")
        opened.append(Camera())
        return opened[-1]

    return opener


def test_corrupt_frames_mid_stream_are_skipped_and_counted(stages, tmp_path, caplog):
    face = astronaut_bgr()
    images = [
        face,
        None,
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((4, 4, 3), np.uint8),
        face,
    ]
    pipeline, out = make(stages, ListSource(images), tmp_path)
    with caplog.at_level("WARNING"):
        stats = pipeline.run()
    assert stats.frames == 6 and stats.corrupt == 4 and stats.processed == 2
    got = events(out)
    assert [e["frame"]["index"] for e in got] == [0, 5]
    # logged once for the first corrupt frame, not once per frame
    assert sum("corrupt frame" in r.message for r in caplog.records) == 1


def test_events_validate_and_boxes_are_in_original_coordinates(stages, tmp_path):
    big = np.zeros((1024, 2048, 3), np.uint8)
    big[100:612, 900:1412] = astronaut_bgr()  # the face sits near x 1080-1180, y 180-280
    pipeline, out = make(stages, ListSource([big]), tmp_path, max_width=640)
    pipeline.run()
    (event,) = events(out)
    jsonschema.validate(event, load_schema())
    assert (event["frame"]["width"], event["frame"]["height"]) == (2048, 1024)
    x, y, w, h = event["faces"][0]["box"]
    assert 1040 <= x + w / 2 <= 1200 and 170 <= y + h / 2 <= 290
    assert w > 40  # scaled back up, not left at detection size


def test_empty_frames_published_only_when_asked(stages, tmp_path):
    blank = np.full((240, 320, 3), 90, np.uint8)
    pipeline, out = make(stages, ListSource([blank, blank]), tmp_path)
    assert pipeline.run().events == 0 and out.getvalue() == ""
    pipeline, out = make(stages, ListSource([blank, blank]), tmp_path / "b", publish_empty=True)
    pipeline.run()
    assert [len(e["faces"]) for e in events(out)] == [0, 0]


def test_hooks_see_every_frame_and_can_filter_faces(stages, tmp_path):
    seen = []
    hooks = PipelineHooks(
        on_frame=[lambda r: seen.append((r.frame.index, len(r.faces)))],
        on_faces=[lambda frame, faces: faces[:1]],
    )
    images = [
        astronaut_bgr(),
        np.full((100, 100, 3), 0, np.uint8),
        next(iter(DemoSource(frames=2))).image,
    ]
    pipeline, _ = make(stages, ListSource(images), tmp_path, hooks=hooks)
    pipeline.run()
    assert [i for i, _ in seen] == [0, 1, 2]
    assert all(n <= 1 for _, n in seen)
    assert seen[1][1] == 0


def test_stop_from_another_thread_ends_the_loop_quickly(stages, tmp_path):
    pipeline, _ = make(stages, DemoSource(frames=10_000, fps=50), tmp_path)
    threading.Timer(0.5, pipeline.stop).start()
    start = time.monotonic()
    stats = pipeline.run()
    assert time.monotonic() - start < 3.0
    assert 0 < stats.frames < 10_000


def test_max_frames(stages, tmp_path):
    pipeline, out = make(stages, DemoSource(frames=50), tmp_path, max_frames=7)
    assert pipeline.run().frames == 7
    seqs = [e["seq"] for e in events(out)]
    assert seqs == sorted(seqs) and len(seqs) == 7


def test_stop_while_a_live_camera_has_vanished(stages, tmp_path):
    """The camera dies after 2 frames and cannot be reopened: stop() must still end the loop."""
    from agent.sources.live import LatestFrameSource

    opener = vanishing_camera(frames=2)
    source = LatestFrameSource("dying", opener, backoff_initial=0.05, backoff_max=0.2)
    pipeline, _ = make(stages, source, tmp_path)
    threading.Timer(1.0, pipeline.stop).start()
    start = time.monotonic()
    stats = pipeline.run()
    assert 0.9 <= time.monotonic() - start < 3.5
    assert 1 <= stats.frames <= 2
    assert source.stats()["failures"] == 1


def test_stats_reporter_publishes_on_its_own_schedule(stages, tmp_path):
    """At the first look (a stdout sink is always "connected"), then every interval whatever the
    frames do, and a final one with the closing counts."""
    from agent.stats import StatsReporter

    source = ListSource([astronaut_bgr(), None, astronaut_bgr(), astronaut_bgr()])
    pipeline, out = make(stages, source, tmp_path)
    now = [0.0]
    reporter = StatsReporter(pipeline, pipeline.publisher, interval_s=2, clock=lambda: now[0])
    assert reporter.tick(0.0, connected=True) == pytest.approx(0.5)  # sent at once; due again at 2
    assert reporter.tick(0.1, connected=True) == pytest.approx(0.5)  # nothing due: look again later
    pipeline.run()
    assert reporter.tick(1.9, connected=True) == pytest.approx(0.1)
    reporter.tick(2.0, connected=True)  # due, frames or not
    reporter.tick(2.5, connected=False)  # lost the broker: nothing
    reporter.tick(2.6, connected=True)  # back: at once, not at 4.0
    now[0] = 3.0
    reporter.stop(final=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    stats = [rec["payload"] for rec in lines if rec["topic"].endswith("/stats")]
    frames = [rec for rec in lines if rec["topic"].endswith("/frames")]
    assert len(frames) == 3
    assert [s["uptime_s"] for s in stats] == [0.0, 2.0, 2.6, 3.0]
    assert [s["final"] for s in stats] == [False, False, False, True]
    first, second, *_, last = stats
    assert first["schema"] == "facecast.stats/1" and first["device_id"] == "test-dev"
    assert first["frames"] == 0 and first["fps"] == 0
    # four frames read, one of them corrupt: three processed, each with a face event
    assert second["frames"] == 4 and second["processed"] == 3 and second["corrupt"] == 1
    assert second["events"] == 3 and second["source"] == {"read": 4}
    assert second["publisher"]["sink"] == "stdout"
    assert second["fps"] == pytest.approx(4 / 2) and second["fps_processed"] == pytest.approx(3 / 2)
    assert {"detect", "classify"} <= set(second["latency_ms"])
    assert last["frames"] == 4 and last["fps"] == 0 and last["publisher"]["connected"] is False
    validator = jsonschema.Draft202012Validator(json.loads(STATS_SCHEMA.read_text()))
    for s in stats:
        validator.validate(s)


def test_a_failing_file_source_ends_the_run_with_its_error(stages, tmp_path):
    class BrokenAfterTwo(ListSource):
        def __iter__(self):
            yield from list(super().__iter__())[:2]
            raise OSError("disk read error")

    pipeline, out = make(stages, BrokenAfterTwo([astronaut_bgr()] * 5), tmp_path)
    with pytest.raises(OSError, match="disk read error"):
        pipeline.run()
    assert pipeline.stats.frames == 2
    assert len(events(out)) == 2


def test_heartbeat_turns_on_frames_and_on_idle_ticks(stages, tmp_path):
    from agent.sources.live import LatestFrameSource

    opener = vanishing_camera(frames=2)
    source = LatestFrameSource("two", opener, backoff_initial=0.05, backoff_max=0.1, idle_tick=0.1)
    beats = []
    pipeline, _ = make(stages, source, tmp_path, hooks=PipelineHooks(heartbeat=[lambda: beats.append(1)]))
    threading.Timer(1.0, pipeline.stop).start()
    stats = pipeline.run()
    assert 1 <= stats.frames <= 2 and stats.corrupt == 0
    assert len(beats) >= stats.frames + 5  # idle ticks kept the loop (and a watchdog) alive


def test_big_frames_are_reduced_to_luma_then_released_with_the_same_findings(stages, tmp_path):
    """A downscaled file frame is queued as luma at half size (0.5 MB instead of 6 at 1080p) and,
    once the detect stage has cut its faces out, without pixels at all. The boxes are the same as
    from the colour frame and the labels too; the probabilities move by about what a one-pixel
    shift of the box moves them (measured on the 1080p clip: see docs/performance.md)."""
    big = np.zeros((1024, 2048, 3), np.uint8)
    big[100:612, 900:1412] = astronaut_bgr()
    seen: list[object] = []

    def shape_of(result):
        seen.append(None if result.frame.image is None else result.frame.image.shape)

    runs = {}
    for keep_color in (False, True):
        hooks = PipelineHooks()
        hooks.on_frame.append(shape_of)
        pipeline, out = make(
            stages,
            ListSource([big, big]),
            tmp_path / str(keep_color),
            max_width=640,
            keep_color=keep_color,
            hooks=hooks,
        )
        pipeline.run()
        runs[keep_color] = [f for e in events(out) for f in e["faces"]]
    assert seen == [None, None, (1024, 2048, 3), (1024, 2048, 3)]
    reduced, full = runs[False], runs[True]
    assert len(reduced) == len(full) == 2
    for r, f in zip(reduced, full, strict=True):
        assert r["box"] == f["box"] and r["score"] == f["score"]
        assert r["emotion"]["label"] == f["emotion"]["label"] and r["gender"]["label"] == f["gender"]["label"]
        drift = max(abs(r["emotion"]["probs"][k] - p) for k, p in f["emotion"]["probs"].items())
        assert 0.0 < drift < 0.1  # a different (half-size) crop, not the same one


def test_luma_is_kept_at_no_less_than_one_and_a_half_detection_widths():
    assert [luma_reduction(w, 640) for w in (640, 959, 960, 1280, 1919, 1920, 2880, 3840)] == [
        1,
        1,
        1,
        1,
        1,
        2,
        3,
        4,
    ]
    assert luma_reduction(1920, 0) == 1  # no downscaling asked for


def test_hooks_get_pixels_only_when_keep_color_asks(stages, tmp_path):
    """A small frame (512 px, never downscaled) keeps its colour until the detect stage has cut its
    faces out, then lets go of it too, unless ``keep_color``; with it, or in the serial loop,
    hooks see the frame as the source gave it."""
    seen = {}
    for name, opts in {
        "default": {},
        "keep_color": {"keep_color": True},
        "serial": {"detect_ahead": False},
    }.items():
        shapes: list[object] = []
        hooks = PipelineHooks()
        hooks.on_frame.append(lambda r, out=shapes: out.append(getattr(r.frame.image, "shape", None)))
        pipeline, out = make(
            stages, ListSource([astronaut_bgr()]), tmp_path / name, max_width=640, hooks=hooks, **opts
        )
        pipeline.run()
        seen[name] = shapes, [f["emotion"]["probs"] for e in events(out) for f in e["faces"]]
    assert seen["default"][0] == [None]
    assert seen["keep_color"][0] == seen["serial"][0] == [(512, 512, 3)]
    # not reduced (512 px is under 1.5 detection widths): the very same crop in all three modes
    assert seen["default"][1] and seen["default"][1] == seen["keep_color"][1] == seen["serial"][1]


class ThreadRecordingDetector:
    """The real detector, noting which thread each call ran in (and optionally failing at call N)."""

    def __init__(self, detector, fail_at: int | None = None):
        self.inner = detector
        self.name = detector.name
        self.threads: list[str] = []
        self.fail_at = fail_at

    def detect(self, image):
        self.threads.append(threading.current_thread().name)
        if self.fail_at is not None and len(self.threads) == self.fail_at:
            raise RuntimeError("detector broke")
        return self.inner.detect(image)


def test_detection_runs_one_frame_ahead_in_its_own_thread_with_identical_results(stages, tmp_path):
    """Detect-ahead only moves work to another core: a real clip gives the same events, in order."""
    from agent.sources import open_source

    detector, classifier = stages
    runs = {}
    for ahead in (True, False):
        recording = ThreadRecordingDetector(detector)
        source = open_source(str(clip("short_hamilton_clip")))
        pipeline, out = make((recording, classifier), source, tmp_path / str(ahead), detect_ahead=ahead)
        pipeline.options.max_frames = 60
        pipeline.run()
        runs[ahead] = [(e["frame"]["index"], e["faces"]) for e in events(out)]
        assert set(recording.threads) == ({"detect"} if ahead else {"MainThread"})
        assert len(recording.threads) >= 60
    indices = [i for i, _ in runs[True]]
    assert len(indices) > 30 and indices == sorted(indices)
    assert runs[True] == runs[False]


def test_a_detector_failure_in_the_detect_thread_ends_the_run_with_its_error(stages, tmp_path):
    detector, classifier = stages
    recording = ThreadRecordingDetector(detector, fail_at=3)
    pipeline, out = make((recording, classifier), ListSource([astronaut_bgr()] * 6), tmp_path)
    with pytest.raises(RuntimeError, match="detector broke"):
        pipeline.run()
    assert len(events(out)) == 2  # the frames detected before the failure were still published


def test_a_live_source_is_detected_ahead_too_and_still_stops_when_the_camera_vanishes(stages, tmp_path):
    from agent.sources.live import LatestFrameSource

    detector, classifier = stages
    recording = ThreadRecordingDetector(detector)
    source = LatestFrameSource(
        "cam", vanishing_camera(frames=4), backoff_initial=0.05, backoff_max=0.1, idle_tick=0.1
    )
    pipeline, out = make((recording, classifier), source, tmp_path)
    threading.Timer(1.0, pipeline.stop).start()
    start = time.monotonic()
    stats = pipeline.run()
    assert time.monotonic() - start < 3.0
    assert 1 <= stats.frames <= 4 and stats.events == stats.frames
    assert set(recording.threads) == {"detect"}
    assert [e["faces"][0]["box"] for e in events(out)]  # the astronaut was found in each event


def test_detect_ahead_follows_the_cpus_this_process_may_use():
    import os

    from agent.pipeline import usable_cpus

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as under systemd's CPUAffinity= or taskset
        assert usable_cpus() == 1
        assert PipelineOptions(device_id="d").detect_ahead is False
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)
    assert PipelineOptions(device_id="d").detect_ahead is (len(before) > 1)
