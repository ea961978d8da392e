"""Builds the agent from an :class:`AgentConfig` and runs it with a clean lifecycle.

Start-up order matters for the error contract: model, detector and source are created (and fail
with one clear line) BEFORE the publisher connects, so a bad install never announces ``online``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from agent.classifier import FaceClassifier, load_classifier
from agent.comms.base import Publisher
from agent.config import AgentConfig
from agent.detectors import FaceDetector, create_detector
from agent.errors import FacecastError
from agent.events import SeqAllocator
from agent.pipeline import Pipeline, PipelineHooks, PipelineOptions, PipelineStats
from agent.sources import FrameSource, open_source
from agent.state_dir import StateDirLock
from agent.watchdog import SystemdNotifier

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 3.0
"""Publisher flush budget on shutdown; keeps SIGTERM -> exit well inside systemd's 5 s."""


@dataclass
class Components:
    source: FrameSource
    detector: FaceDetector
    classifier: FaceClassifier


def build_detector(config: AgentConfig) -> FaceDetector:
    # DetectorConfig's fields are create_detector's keyword arguments, one for one.
    d = config.detector.to_dict()
    return create_detector(d.pop("name"), **d)


def build_classifier(config: AgentConfig) -> FaceClassifier:
    model = config.model
    return load_classifier(
        model.path, num_threads=model.num_threads, batch=model.batch, single_pass=model.single_pass
    )


def build_source(config: AgentConfig) -> FrameSource:
    # max_width also reaches the source: still images decode reduced to what detection needs
    options = config.source.to_dict()
    options.pop("uri")
    return open_source(config.source.uri, **options)


def build_components(config: AgentConfig) -> Components:
    """Model first (the most likely thing to be wrong), then detector, then the source."""
    classifier = build_classifier(config)
    detector = build_detector(config)
    source = build_source(config)
    return Components(source=source, detector=detector, classifier=classifier)


def build_publisher(config: AgentConfig, stream: TextIO | None = None) -> Publisher:
    from agent.comms.factory import create_publisher

    return create_publisher(config.sink, config.mqtt, config.device_id, config.state_dir, stream=stream)


def ensure_state_dir(path: Path) -> None:
    """The state directory (seq numbers, MQTT buffer) must exist and be writable before we start."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacecastError(f"cannot create state_dir {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise FacecastError(f"state_dir {path} is not writable")


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT call ``stop`` (main thread only; elsewhere this is a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_agent(
    config: AgentConfig,
    *,
    max_frames: int | None = None,
    publisher: Publisher | None = None,
    hooks: PipelineHooks | None = None,
    components: Components | None = None,
    stream: TextIO | None = None,
) -> PipelineStats:
    """Build everything from ``config``, run until the source ends / ``max_frames`` / a signal,
    then close the publisher (which flushes and announces ``stopped``). Raises ``FacecastError``
    subclasses for bad models, sources and detectors before anything is published.

    The state directory is locked first, before the model loads or the camera opens: a second
    agent on it is refused at once, with the first one's pid, instead of failing on a busy camera.
    """
    ensure_state_dir(config.state_dir)
    with StateDirLock(config.state_dir):
        parts = components or build_components(config)
        return _run(config, parts, max_frames=max_frames, publisher=publisher, hooks=hooks, stream=stream)


def _run(
    config: AgentConfig,
    parts: Components,
    *,
    max_frames: int | None,
    publisher: Publisher | None,
    hooks: PipelineHooks | None,
    stream: TextIO | None,
) -> PipelineStats:
    seq = SeqAllocator(config.state_dir)
    pub = publisher or build_publisher(config, stream)
    pipeline = Pipeline(
        parts.source,
        parts.detector,
        parts.classifier,
        pub,
        seq,
        PipelineOptions(
            device_id=config.device_id,
            max_width=config.source.max_width,
            publish_empty=config.events.publish_empty,
            subtopic=config.events.subtopic,
            publish_frames=config.privacy.mode != "aggregate",
            gender=config.privacy.gender,
            max_frames=max_frames,
        ),
        hooks,
    )
    reporter = None
    if config.events.stats_interval_s > 0:
        from agent.stats import StatsReporter

        reporter = StatsReporter(
            pipeline, pub, config.events.stats_interval_s, count_faces=config.privacy.mode != "aggregate"
        )
    from agent.extensions import attach_extensions

    extensions = attach_extensions(config, pipeline, pub)
    notifier = SystemdNotifier()
    if notifier.enabled:
        pipeline.hooks.heartbeat.append(notifier.heartbeat)
    pub.start()
    try:
        extensions.start()
        notifier.ready()
        if reporter is not None:
            reporter.start()  # after READY=1: nothing is published before systemd hears the agent is up
        with stop_on_signals(pipeline.stop):
            return pipeline.run()
    finally:
        # Whatever one of these raises, the publisher still closes: it flushes what it can and
        # announces ``stopped``, which a subscriber would otherwise wait for in vain.
        _shutdown_step("notifying systemd", notifier.stopping)
        _shutdown_step("closing the source", parts.source.close)
        _shutdown_step("closing the extensions", extensions.close)
        if reporter is not None:
            # after the last event: the run's closing counts
            _shutdown_step("sending the final stats", lambda: reporter.stop(final=True))
        pub.close(timeout=CLOSE_TIMEOUT_S)


def _shutdown_step(what: str, step: Callable[[], None]) -> None:
    try:
        step()
    except Exception as exc:
        # One line, as every error the agent logs; the traceback only with --log-level DEBUG.
        log.error(  # noqa: TRY400
            "%s failed on the way out (%s: %s); closing the publisher anyway", what, type(exc).__name__, exc
        )
        log.debug("traceback of the failure above", exc_info=True)
