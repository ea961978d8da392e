"""The frame-source interface: something that yields frames until it ends or is closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass
class Frame:
    """One captured image.

    ``image`` is BGR ``HxWx3`` (or grayscale ``HxW`` for sources that give luma only) in the
    source's native resolution, unless ``full_size`` holds ``(height, width)``: the image was then
    decoded (a large still image) or kept (see ``agent.pipeline.luma_reduction``) smaller, and boxes
    and the event's frame size refer to ``full_size``. ``decode_ms``: how long the source took to
    decode it, when pulling the frame from the source does not tell (a still decoded at open).

    ``index`` counts frames read from the source (dropped live frames included, so gaps show
    drops); ``timestamp`` is wall-clock seconds at capture; ``file`` names the image for image
    sources. An ``idle`` frame carries no image: a live source emits one when no frame
    arrived for a while (camera gone, stream stalled), so the consumer's loop still turns
    (heartbeats, watchdog pings) instead of blocking until the device returns.

    ``new_scene``: nothing before this frame shows the same people (each image of a folder of
    unrelated photos), so a tracker must not carry a track across it.

    ``recycle``, when a source sets it, takes ``image`` back for the source to decode the next
    frame into. A consumer that is done with the full-size image (and keeps no view of it) hands it
    back, so a 1080p stream reuses one 6 MB buffer instead of allocating, faulting in and freeing a
    new one for every frame, which was the agent's peak-memory spike.
    """

    index: int
    timestamp: float
    image: npt.NDArray[np.uint8] | None
    file: str | None = None
    full_size: tuple[int, int] | None = None
    decode_ms: float | None = None
    idle: bool = False
    new_scene: bool = False
    recycle: Callable[[npt.NDArray[np.uint8]], None] | None = field(default=None, repr=False, compare=False)


@runtime_checkable
class FrameSource(Protocol):
    """Iterate to get frames; ``close()`` stops iteration from any thread and releases the device.

    ``live`` sources (cameras, streams) hand out only the newest frame and never end by
    themselves; file sources hand out every frame and end at the end of the file.
    """

    name: str
    live: bool

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, int]:
        """Counters: at least ``read`` and, where they apply, ``dropped``, ``skipped``, ``reconnects``."""
        ...
