"""Gender accuracy on the same faces read two ways: the whole stored image, and the agent's own crop.

AAF stores each face loosely (hair, shoulders: the image side is about 1.6x a BlazeFace box), so the
whole image is a looser framing than the agent ever feeds. Each test image is put in the middle of a
gray canvas three times its side (a scene around the face, so the short-range detector sees a whole
face), BlazeFace finds the face, and the classifier crops it with the card's margin exactly as the
agent does. Both readings are scored on the faces the detector found, so the gap is framing alone.
Usage: python bench/bench_framing.py [MODEL.tflite ...] [--set aaf|utkface|lfw] [--split test]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from agent.classifier import load_classifier
from agent.detectors.blazeface import BlazeFaceDetector, BlazeFaceOptions

REPO = Path(__file__).resolve().parents[1]
GENDERS = ("male", "female")


def load_set(datasets: Path, which: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    root = datasets / which
    names = (root / "splits" / f"{split}.txt").read_text().split("\n")
    names = [n for n in names if n.strip()]
    if which == "utkface":
        labels = [int(n.split("_")[1]) for n in names]
        folder = root / "images"
    else:
        with (root / "labels.csv").open(newline="") as fh:
            rows = {r["file"]: r["gender"] for r in csv.DictReader(fh)}
        labels = [GENDERS.index(rows[n]) for n in names]
        folder = root / "images"
    images = [cv2.imread(str(folder / n), cv2.IMREAD_COLOR) for n in names]
    return images, np.asarray(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="*", type=Path, default=[REPO / "models" / "facecast_int8.tflite"])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--set", dest="which", default="aaf", choices=("aaf", "utkface", "lfw"))
    ap.add_argument("--split", default="test")
    args = ap.parse_args()

    images, labels = load_set(args.datasets, args.which, args.split)
    det = BlazeFaceDetector(BlazeFaceOptions(range="short", num_threads=1))
    scenes, boxes, keep = [], [], []
    for i, im in enumerate(images):
        s = im.shape[0]
        scene = np.full((3 * s, 3 * s, 3), 128, np.uint8)
        scene[s : 2 * s, s : 2 * s] = im
        found = det.detect(scene)
        if found:
            scenes.append(scene)
            boxes.append(max(found, key=lambda d: d.score).box)
            keep.append(i)
    y = labels[keep]
    print(f"{args.which} {args.split}: {len(images)} faces, BlazeFace found {len(keep)}; scored on those")
    for model in args.models:
        clf = load_classifier(model)
        whole = np.array(
            [
                GENDERS.index(
                    clf.classify(images[i], [(0, 0, images[i].shape[1], images[i].shape[0])])[0].gender
                )
                for i in keep
            ]
        )
        crop = np.array(
            [GENDERS.index(clf.classify(sc, [b])[0].gender) for sc, b in zip(scenes, boxes, strict=True)]
        )

        def acc(pred: np.ndarray, sel: np.ndarray) -> float:
            return 100.0 * float((pred[sel] == y[sel]).mean())

        all_ = np.ones(len(y), bool)
        print(f"model {model.name} ({model.parent.name}/)")
        for label, pred in (("whole image", whole), ("agent crop ", crop)):
            print(
                f"  {label}: {acc(pred, all_):6.2f}%   men {acc(pred, y == 0):6.2f}%"
                f"   women {acc(pred, y == 1):6.2f}%"
            )
        print(f"  gap agent crop - whole image: {acc(crop, all_) - acc(whole, all_):+.2f} points")


if __name__ == "__main__":
    main()
