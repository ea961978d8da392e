"""Non-maximum suppression for axis-aligned boxes, in numpy (no OpenCV dnn module needed).

``weighted`` is MediaPipe's blended NMS: overlapping candidates are averaged with their scores as
weights, which steadies BlazeFace boxes from frame to frame compared to keeping only the best one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def iou_one_to_many(box: F32, boxes: F32) -> F32:
    """IoU of one ``[x0, y0, x1, y1]`` box against ``N x 4`` boxes."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(boxes: F32, scores: F32, iou_threshold: float, *, weighted: bool = True) -> tuple[F32, F32]:
    """Suppress overlaps; returns ``(boxes, scores)`` of the kept (or blended) boxes, best first."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores.reshape(0)
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept_boxes: list[F32] = []
    kept_scores: list[float] = []
    remaining = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        overlap = iou_one_to_many(boxes[i], boxes) >= iou_threshold
        group = overlap & remaining
        group[i] = True
        remaining &= ~group
        if weighted:
            w = scores[group]
            kept_boxes.append((boxes[group] * w[:, None]).sum(axis=0) / w.sum())
        else:
            kept_boxes.append(boxes[i])
        kept_scores.append(float(scores[i]))
    return np.stack(kept_boxes).astype(np.float32), np.asarray(kept_scores, dtype=np.float32)
