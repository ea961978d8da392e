"""The frame loop: source -> detector -> crop -> classifier -> event -> publisher.

Every stage is injected (protocols), so tests and tools swap a folder source or a stdout sink
without touching the loop, and later layers (a systemd watchdog, a face tracker) attach through
:class:`PipelineHooks` instead of editing it. Stopping is cooperative: :meth:`Pipeline.stop` may be
called from a signal handler or another thread; the loop ends after the current frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.classifier import FaceClassifier
from agent.comms.base import Publisher
from agent.detectors.base import Detection, FaceDetector
from agent.events import FaceResult, SeqAllocator, build_frame_event
from agent.preprocess import to_gray
from agent.sources.base import Frame, FrameSource
from agent.timing import LatencyRecorder

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FrameResult:
    """What the loop produced for one frame; handed to ``on_frame`` hooks."""

    frame: Frame
    faces: list[FaceResult]
    event: dict[str, Any] | None
    latency_ms: dict[str, float]
    classify_cpu_ms: float = 0.0
    """CPU time of this thread and the detect stage's spent cutting and classifying the faces. Unlike
    ``latency_ms["classify"]`` it leaves out the time the stage waited for a core, which on a 2-core
    machine shared by the decode, detect and classify threads is most of the difference."""


@dataclass
class PipelineHooks:
    """Extension points. ``on_frame`` runs once per loop iteration (also for frames without faces,
    so a watchdog ping belongs there); ``on_faces`` may filter/annotate faces before the event is built
    (a tracker would go there)."""

    on_frame: list[Callable[[FrameResult], None]] = field(default_factory=list)
    heartbeat: list[Callable[[], None]] = field(default_factory=list)
    """Called once per loop turn, including idle turns of a live source with no frames (at least
    every ~1 s): the place for a systemd ``WATCHDOG=1`` ping."""
    on_faces: list[Callable[[Frame, list[FaceResult]], list[FaceResult]]] = field(default_factory=list)
    on_event: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)


def usable_cpus() -> int:
    """CPUs this process may run on: a service pinned to one core (``CPUAffinity=``, ``taskset``)
    gains nothing from a second stage thread, whatever the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass
class PipelineOptions:
    device_id: str
    max_width: int = 640
    publish_empty: bool = False
    subtopic: str = "frames"
    publish_frames: bool = True
    """False (``privacy.mode: aggregate``): no frame event is built or published; hooks still run."""
    gender: bool = True
    """False (``privacy.gender: false``): frame events carry no gender."""
    max_frames: int | None = None
    corrupt_log_every: int = 100
    prefetch: int = 2
    """Frames decoded ahead in a thread for file sources (decode overlaps inference; 0 = off).
    Kept small: each queued 1080p frame is 1.2 MB of RSS (half-size luma and the detector's copy,
    see ``keep_color``)."""
    detect_ahead: bool = field(default_factory=lambda: usable_cpus() > 1)
    """Detect in a thread of its own, one frame ahead of classification, so the two overlap on a
    multi-core CPU (LiteRT and OpenCV release the GIL). On by default with more than one usable core; a
    file with ``prefetch=0`` never uses it (a run processed step by step, as the tracking replay)."""
    keep_color: bool = False
    """Keep every frame's pixels as the source gave them until the hooks have run (for hooks that
    need pixels). By default a downscaled frame is reduced to luma (see :func:`luma_reduction`)
    once the detector's colour copy is made, and the detect stage lets go of the pixels once it
    has cut the faces out: ``on_faces`` and ``on_frame`` hooks then get ``frame.image is None``.
    A still image the source decoded reduced stays reduced: boxes refer to ``Frame.full_size``."""


@dataclass
class PipelineStats:
    frames: int = 0
    processed: int = 0
    corrupt: int = 0
    faces: int = 0
    events: int = 0
    first_event_at: float | None = None
    started_at: float = field(default_factory=time.time)
    stopped_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def valid_image(image: Any) -> bool:
    """A frame the detector can take: non-empty uint8 HxW or HxWx{1,3,4}."""
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.size > 0
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)))
        and min(image.shape[:2]) >= 8
    )


def detection_image(image: Image, max_width: int) -> tuple[Image, float]:
    """Downscale to ``max_width`` (if wider) and drop alpha; returns ``(image, original/scaled factor)``."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    h, w = image.shape[:2]
    if max_width <= 0 or w <= max_width:
        return image, 1.0
    nh = max(1, round(h * max_width / w))
    # Bilinear, not area: several times cheaper on a 1080p frame (docs/performance.md); the detector does not
    # need the anti-aliasing; the classifier crops from the full-resolution frame anyway.
    small = cv2.resize(image, (max_width, nh), interpolation=cv2.INTER_LINEAR)
    return np.asarray(small, dtype=np.uint8), w / max_width


def detection_copy(frame: Frame, max_width: int) -> tuple[Image, float, bool]:
    """:func:`detection_image` of the frame's image, with the factor from detection pixels to the
    frame's full size (a source may have decoded a large still image smaller, see
    ``Frame.full_size``), and whether the image itself was downscaled for detection."""
    assert frame.image is not None
    small, shrink = detection_image(frame.image, max_width)
    factor = shrink
    if frame.full_size is not None:
        factor *= frame.full_size[1] / frame.image.shape[1]
    return small, factor, shrink > 1.0


def to_pixel_box(det: Detection, factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Detection (detection-frame floats) -> integer ``(x, y, w, h)`` inside the original frame."""
    x0 = min(max(0, round(det.x * factor)), width - 1)
    y0 = min(max(0, round(det.y * factor)), height - 1)
    x1 = min(width, round((det.x + det.w) * factor))
    y1 = min(height, round((det.y + det.h) * factor))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


# What the stages hand each other. Each value has one writer, the step named in its docstring, and
# is read downstream; a stage that finds a value already there skips its step (a frame whose
# detection ran ahead in the detect thread is not detected again by the consumer).


@dataclass
class DetectorInput:
    """Written by the downscale step: the detector's copy of the frame and the factor from its
    pixels to the frame's full-size pixels. The detect step sets ``image`` to None once it has cut
    the faces out (the copy is 0.9 MB at 1080p, and up to three frames wait downstream)."""

    image: Image | None
    factor: float
    ms: float


@dataclass(frozen=True)
class Detected:
    """Written by the detect step: the faces the detector found, in detector pixels."""

    detections: list[Detection]
    ms: float


@dataclass(frozen=True)
class FaceCrops:
    """Written by the crop step: a frame's faces, cut out and prepared for the classifier, with the
    frame's size: all the classifier and the event need, so the frame's pixels can go."""

    boxes: list[tuple[int, int, int, int]]
    batch: npt.NDArray[np.int8]
    width: int
    height: int
    ms: float
    cpu_ms: float


@dataclass
class InFlight:
    """One frame on its way from the source to the consumer, with what the stages found so far.

    ``read_ms``: how long pulling the frame from the source took, timed by the first thread stage
    (for a file source, pulling a frame IS decoding it)."""

    frame: Frame
    read_ms: float | None = None
    detector_input: DetectorInput | None = None
    detected: Detected | None = None
    crops: FaceCrops | None = None


def _cut_faces(
    frame: Frame, detections: list[Detection], factor: float, classifier: FaceClassifier
) -> FaceCrops:
    """Face boxes in the frame's own pixels, and the classifier's inputs cut from its (maybe
    reduced, see :func:`luma_reduction`) image."""
    start, cpu_start = time.perf_counter(), time.thread_time()
    assert frame.image is not None
    image_h, image_w = frame.image.shape[:2]
    height, width = frame.full_size or (image_h, image_w)
    boxes = [to_pixel_box(d, factor, width, height) for d in detections]
    sx, sy = image_w / width, image_h / height
    crops = boxes if sx == sy == 1.0 else [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]
    batch = classifier.prepare(frame.image, crops)
    ms = (time.perf_counter() - start) * 1000.0
    return FaceCrops(boxes, batch, width, height, ms, (time.thread_time() - cpu_start) * 1000.0)


class _Stage:
    """Runs ``work`` on every item of ``frames`` in a thread of its own and hands them on, in
    order, through a small queue: that stage then overlaps the next one on another core.

    Frames are never dropped here (a full queue blocks the stage), so a file source still has every
    frame processed; a live source drops stale frames upstream, in its grabber.
    """

    _END = object()

    def __init__(
        self,
        name: str,
        frames: Iterator[InFlight],
        work: Callable[[InFlight], None],
        depth: int,
        stop: threading.Event,
        *,
        time_reads: bool = False,
    ) -> None:
        """``time_reads``: record in ``InFlight.read_ms`` how long pulling each item took."""
        self._frames = frames
        self._work = work
        self._time_reads = time_reads
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = stop
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                item = next(self._frames, None)
                if item is None:
                    break
                if self._time_reads:
                    item.read_ms = (time.perf_counter() - start) * 1000.0
                if not item.frame.idle:
                    self._work(item)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except Exception as exc:  # any source or stage failure must end the run (re-raised by the consumer)
            log.debug("pipeline stage %s failed", self._thread.name, exc_info=True)
            self._error = exc
        finally:
            # Finish the upstream generator HERE (a source releases its decoder in this thread), so
            # no daemon thread is left inside native decode code when the interpreter exits.
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            self._put_final(self._END)

    def _put_final(self, item: object) -> None:
        with contextlib.suppress(queue.Full):  # the consumer has stopped and will not read it
            self._queue.put(item, timeout=0.5)

    def join(self, timeout: float) -> None:
        """Wait for the thread to finish (after ``stop`` was set); drains the queue so it can."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __iter__(self) -> Iterator[InFlight]:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    item = self._END
                elif self._thread.is_alive():
                    continue
                else:  # the thread ended, maybe without room for its end marker: take what is left
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = self._END
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            yield item


def luma_reduction(width: int, max_width: int) -> int:
    """The integer factor by which a frame's luma is kept smaller than the frame.

    At 1.5x the detection width (or more), a face of 30 px at that width (the 1080p clip's) still
    gives a crop of at least the model's 48 px, while a 1080p frame's luma costs 0.5 MB instead
    of 2. Smaller faces are then cut from fewer pixels than the full frame has; on the 1080p clip
    the labels changed less than a one-pixel shift of the boxes changes them (docs/performance.md).
    """
    if max_width <= 0:
        return 1
    return max(1, int(width // (1.5 * max_width)))


def _downscale_for_detection(max_width: int, keep_color: bool) -> Callable[[InFlight], None]:
    """Stage work: the downscale step, which writes ``InFlight.detector_input``.

    Unless ``keep_color``, a frame that was downscaled is then kept as grayscale, reduced by
    :func:`luma_reduction`: the detector has its colour copy and the classifier reads luma only, so
    each queued 1080p frame costs 0.5 MB instead of 6 (the agent's peak RSS). The colour buffer
    goes back to the source, which decodes the next frame into it.
    """

    def work(item: InFlight) -> None:
        frame = item.frame
        if not valid_image(frame.image):
            return  # the consumer counts and logs it
        assert frame.image is not None
        start = time.perf_counter()
        small, factor, downscaled = detection_copy(frame, max_width)
        if downscaled and not keep_color:
            full = frame.image
            height, width = full.shape[:2]
            luma = to_gray(full)
            k = luma_reduction(width, max_width)
            if k > 1:
                # An exact integer ratio keeps INTER_AREA on its fast path (0.1 ms at 1080p).
                size = (width // k, height // k)
                luma = np.asarray(cv2.resize(luma, size, interpolation=cv2.INTER_AREA), np.uint8)
                if frame.full_size is None:
                    frame.full_size = (height, width)
            frame.image = luma
            if frame.recycle is not None:
                frame.recycle(full)  # nothing here holds it any more: the source decodes into it
            del full
        item.detector_input = DetectorInput(small, factor, (time.perf_counter() - start) * 1000.0)

    return work


def _detect_ahead(
    detector: FaceDetector, classifier: FaceClassifier, max_width: int, keep_color: bool
) -> Callable[[InFlight], None]:
    """Stage work: the detect step (``InFlight.detected``) on the downscaled copy (made here if no
    earlier stage did), so
    frame N+1 is being detected while frame N is classified and published (on 2 cores, detection is
    the longest stage).

    Unless ``keep_color``, the faces are then cut out here and the frame's pixels released: a frame
    waiting for the classifier holds its faces' model inputs (a few KB) instead of its luma plane
    and the detector's copy (1.2 MB at 1080p, with up to three frames downstream).
    """
    downscale = _downscale_for_detection(max_width, keep_color)

    def work(item: InFlight) -> None:
        if item.detector_input is None:
            downscale(item)
        small = item.detector_input
        if small is None or small.image is None:
            return  # not a valid image: the consumer counts and logs it
        start = time.perf_counter()
        detections = detector.detect(small.image)
        item.detected = Detected(detections, (time.perf_counter() - start) * 1000.0)
        frame = item.frame
        if keep_color or frame.image is None:
            return
        item.crops = _cut_faces(frame, detections, small.factor, classifier)
        small.image = None  # the detector's copy is done with
        frame.image = None

    return work


class Pipeline:
    """Runs the loop until the source ends, ``max_frames`` is reached, or :meth:`stop` is called."""

    def __init__(  # noqa: PLR0917 - the stages, injected in pipeline order
        self,
        source: FrameSource,
        detector: FaceDetector,
        classifier: FaceClassifier,
        publisher: Publisher,
        seq: SeqAllocator,
        options: PipelineOptions,
        hooks: PipelineHooks | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.classifier = classifier
        self.publisher = publisher
        self.seq = seq
        self.options = options
        self.hooks = hooks or PipelineHooks()
        self.latency = LatencyRecorder()
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._prev_publish_ms = 0.0
        self._stages: list[_Stage] = []

    def stop(self) -> None:
        """Ask the loop to end after the current frame. Safe from signal handlers and threads.

        The source is closed too (from a helper thread, so a handler never blocks on a device):
        a live source waiting for a frame from a vanished camera must not hold the loop.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        threading.Thread(target=self.source.close, name="source-close", daemon=True).start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _items(self) -> Iterator[InFlight]:
        """The frames, through the thread stages the options ask for.

        A file source gets a prefetch stage (decode and downscale) and a detect stage; a live source
        only the detect stage, with a queue of one, so it stays at most one frame behind its grabber
        (which already decodes in its own thread and drops what the loop cannot take).
        """
        frames: Iterator[InFlight] = (InFlight(frame) for frame in self.source)
        live = self.source.live
        if not live and self.options.prefetch > 0:
            work = _downscale_for_detection(self.options.max_width, self.options.keep_color)
            self._stages.append(
                _Stage("prefetch", frames, work, self.options.prefetch, self._stop, time_reads=True)
            )
            frames = iter(self._stages[-1])
        if self.options.detect_ahead and (live or self._stages):
            # Depth 1: one detected frame waiting keeps the consumer busy (its faces, not its pixels).
            work = _detect_ahead(
                self.detector, self.classifier, self.options.max_width, self.options.keep_color
            )
            self._stages.append(_Stage("detect", frames, work, 1, self._stop))
            frames = iter(self._stages[-1])
        return frames

    def run(self) -> PipelineStats:
        """The loop. The source is closed on the way out; the publisher is NOT (its owner closes it)."""
        log.info("pipeline started: source=%s detector=%s", self.source.name, self.detector.name)
        items = self._items()
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                item = next(items, None)
                wait_ms = (time.perf_counter() - start) * 1000.0
                if item is None:
                    break
                if not item.frame.idle:
                    self.stats.frames += 1
                    self.process(item, wait_ms)
                for beat in self.hooks.heartbeat:
                    beat()
                if self.options.max_frames is not None and self.stats.frames >= self.options.max_frames:
                    break
        finally:
            self._stop.set()
            self.source.close()
            for stage in reversed(self._stages):  # downstream first: it is the one draining upstream
                stage.join(timeout=3.0)
            self.stats.stopped_at = time.time()
            log.info(
                "pipeline stopped: %d frames, %d events, %d faces, %d corrupt; source %s",
                self.stats.frames,
                self.stats.events,
                self.stats.faces,
                self.stats.corrupt,
                self.source.stats(),
            )
        return self.stats

    def _skip_corrupt(self, frame: Frame) -> None:
        self.stats.corrupt += 1
        if self.stats.corrupt == 1 or self.stats.corrupt % self.options.corrupt_log_every == 0:
            shape = getattr(frame.image, "shape", None)
            log.warning(
                "skipping corrupt frame %d (shape %s); %d so far", frame.index, shape, self.stats.corrupt
            )

    def process(self, item: InFlight, wait_ms: float = 0.0) -> FrameResult | None:
        """Detect, classify, publish one frame. Returns None for a corrupt (skipped) frame.

        A frame from the detect stage usually comes with its faces already cut out
        (``InFlight.crops``) and without pixels; the steps no stage ran for it run here."""
        frame, cut = item.frame, item.crops
        if cut is None and not valid_image(frame.image):
            self._skip_corrupt(frame)
            return None
        decode_ms = frame.decode_ms if frame.decode_ms is not None else item.read_ms
        lat: dict[str, float] = {"decode": decode_ms if decode_ms is not None else wait_ms}
        self.latency.add("decode", lat["decode"])
        small = item.detector_input
        if small is not None:
            lat["resize"] = small.ms
            self.latency.add("resize", lat["resize"])
        detected = item.detected
        if detected is not None:
            lat["detect"] = detected.ms
            self.latency.add("detect", lat["detect"])
        if cut is None:
            if small is not None and small.image is not None:
                image, factor = small.image, small.factor
            else:
                with self.latency.measure("resize", lat):
                    image, factor, _ = detection_copy(frame, self.options.max_width)
            if detected is None:
                with self.latency.measure("detect", lat):
                    found = self.detector.detect(image)
                detected = Detected(found, lat["detect"])
            cut = _cut_faces(frame, detected.detections, factor, self.classifier)
        assert detected is not None  # crops are only ever cut after the detect step
        width, height = cut.width, cut.height
        faces: list[FaceResult] = []
        start, cpu_start = time.perf_counter(), time.thread_time()
        if cut.boxes:
            attrs = self.classifier.classify_batch(cut.batch)
            faces = [
                FaceResult(box=b, score=d.score, attributes=a)
                for b, d, a in zip(cut.boxes, detected.detections, attrs, strict=True)
            ]
        # The crop is part of classifying, wherever it ran.
        lat["classify"] = cut.ms + (time.perf_counter() - start) * 1000.0
        classify_cpu_ms = cut.cpu_ms + (time.thread_time() - cpu_start) * 1000.0
        self.latency.add("classify", lat["classify"])
        for transform in self.hooks.on_faces:
            faces = transform(frame, faces)
        self.stats.processed += 1
        self.stats.faces += len(faces)
        event = None
        if self.options.publish_frames and (faces or self.options.publish_empty):
            lat["prev_publish"] = self._prev_publish_ms
            event = build_frame_event(
                device_id=self.options.device_id,
                boot_id=self.seq.boot_id,
                seq=self.seq.next(),
                timestamp=frame.timestamp,
                frame_index=frame.index,
                width=width,
                height=height,
                faces=faces,
                latency_ms=lat,
                file=frame.file,
                gender=self.options.gender,
            )
            start = time.perf_counter()
            self.publisher.publish(self.options.subtopic, event)
            self._prev_publish_ms = (time.perf_counter() - start) * 1000.0
            self.latency.add("publish", self._prev_publish_ms)
            self.stats.events += 1
            if self.stats.first_event_at is None:
                self.stats.first_event_at = time.time()
            for on_event in self.hooks.on_event:
                on_event(event)
        log.debug("frame %d: %d faces %s", frame.index, len(faces), lat)
        result = FrameResult(
            frame=frame, faces=faces, event=event, latency_ms=lat, classify_cpu_ms=classify_cpu_ms
        )
        for hook in self.hooks.on_frame:
            hook(result)
        return result
