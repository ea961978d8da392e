"""Matching this frame's faces to existing tracks: IoU first, centre distance as a fallback.

Greedy on ascending cost: with the handful of faces a camera sees, it picks the same pairs as the
Hungarian method in practice, needs no solver, and costs microseconds on a Pi. IoU alone fails when
a face moves more than its own width between processed frames (a slow Pi, a fast walker), hence the
centre-distance fallback, gated by the track's size.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]
"""``(x, y, w, h)``."""


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax1, bx1) - max(a[0], b[0])
    ih = min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def center_distance(a: Box, b: Box) -> float:
    """Distance between the box centres, in units of ``a``'s larger side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float((dx * dx + dy * dy) ** 0.5 / max(1.0, a[2], a[3]))


def match(
    predicted: Sequence[Box], detected: Sequence[Box], *, min_iou: float, max_distance: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """``(pairs (track, face), unmatched tracks, unmatched faces)`` by indices.

    Cost is ``1 - IoU`` for pairs overlapping at least ``min_iou``, else ``1 + distance`` when the
    centres are within ``max_distance`` (so any overlap beats any distance-only match).
    """
    candidates: list[tuple[float, int, int]] = []
    for t, p in enumerate(predicted):
        for f, d in enumerate(detected):
            overlap = iou(p, d)
            if overlap >= min_iou and overlap > 0.0:
                candidates.append((1.0 - overlap, t, f))
                continue
            dist = center_distance(p, d)
            if dist <= max_distance:
                candidates.append((1.0 + dist, t, f))
    candidates.sort()
    used_t: set[int] = set()
    used_f: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _cost, t, f in candidates:
        if t in used_t or f in used_f:
            continue
        used_t.add(t)
        used_f.add(f)
        pairs.append((t, f))
    return (
        pairs,
        [t for t in range(len(predicted)) if t not in used_t],
        [f for f in range(len(detected)) if f not in used_f],
    )
