"""Temporal smoothing of class probabilities, so a label does not flicker from frame to frame.

An exponential moving average of the probability vector (not of the label) keeps the evidence of
several frames: one odd frame moves the average by ``alpha``, it does not flip the label.
"""

from __future__ import annotations

from collections.abc import Mapping


class EmaProbabilities:
    """EMA of a probability mapping; the first observation initialises it."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._values: dict[str, float] = {}

    def update(self, probs: Mapping[str, float]) -> None:
        if not self._values:
            self._values = {k: float(v) for k, v in probs.items()}
            return
        a = self.alpha
        for key, value in probs.items():
            self._values[key] = (1.0 - a) * self._values.get(key, 0.0) + a * float(value)

    @property
    def values(self) -> dict[str, float]:
        return dict(self._values)

    def top(self) -> tuple[str, float]:
        """``(label, probability)`` of the current argmax; raises before the first update."""
        if not self._values:
            raise ValueError("no observation yet")
        label = max(self._values, key=self._values.__getitem__)
        return label, self._values[label]


def binary_probs(label: str, score: float, labels: tuple[str, str]) -> dict[str, float]:
    """A two-class output given as (winning label, its probability) -> both probabilities."""
    other = labels[1] if label == labels[0] else labels[0]
    p = min(1.0, max(0.0, float(score)))
    return {label: p, other: 1.0 - p}
