"""Tracking on the three dataset clips: label flip rate before/after smoothing, and message volume.

Each clip is replayed through the real detector and classifier on its own timeline
(:mod:`agent.tracking.replay`). Flip rate = label changes between consecutive sightings of the same
track, per sighting transition, over all confirmed tracks: "raw" is the classifier's per-frame
label, "smoothed" the track's EMA label. Messages: per-frame events (one per frame with a face) vs
per-track messages (events new/update/end, plus the retained presence document).

    .venv/bin/python bench/bench_tracking.py [--datasets DIR] [--max-frames N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.app import build_classifier, build_detector  # noqa: E402
from agent.config import AgentConfig  # noqa: E402
from agent.tracking.replay import replay  # noqa: E402

CLIPS = ("short_hamilton_clip", "facenet_pytorch_video", "news_interview_portrait")


def bench_clip(
    path: Path, config: AgentConfig, components: tuple[object, object], max_frames: int | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state:
        result = replay(path, config, components=components, state_dir=Path(state), max_frames=max_frames)
    pub = result.publisher
    tracks = result.confirmed()
    transitions = sum(max(0, t.frames - 1) for t in tracks)
    raw = sum(t.raw_flips for t in tracks)
    smooth = sum(t.smoothed_flips for t in tracks)
    events = pub.on("events")
    kinds = {k: sum(1 for e in events if e["type"] == k) for k in ("new", "update", "end")}
    frames_msgs = len(pub.on("frames"))
    track_msgs = len(events) + len(pub.on("presence"))
    return {
        "clip": path.stem,
        "frames": result.frames,
        "tracks": len(tracks),
        "tentative_dropped": len(result.tracks) - len(tracks),
        "transitions": transitions,
        "raw_flips": raw,
        "smoothed_flips": smooth,
        "raw_flip_rate": round(raw / transitions, 4) if transitions else 0.0,
        "smoothed_flip_rate": round(smooth / transitions, 4) if transitions else 0.0,
        "frame_messages": frames_msgs,
        "track_events": kinds,
        "presence_messages": len(pub.on("presence")),
        "summary_messages": len(pub.on("summary")),
        "per_track_messages": track_msgs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--model", type=Path, default=None, help="emotion/gender .tflite")
    parser.add_argument("--alpha", type=float, default=None, help="override tracking.ema_alpha")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    default = Path(os.environ.get("FACECAST_DATASETS") or REPO.parent / "shared" / "datasets")
    datasets = args.datasets or default
    config = AgentConfig(device_id="bench")
    if args.model is not None:
        config.model.path = args.model
    if args.alpha is not None:
        config.tracking.ema_alpha = args.alpha
    components = (build_detector(config), build_classifier(config))
    rows = []
    for name in CLIPS:
        path = datasets / "videos" / f"{name}.mp4"
        if not path.is_file():
            print(f"missing {path}", file=sys.stderr)
            continue
        rows.append(bench_clip(path, config, components, args.max_frames))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'clip':26} {'frames':>6} {'tracks':>6} {'raw flip':>9} {'smoothed':>9} "
        f"{'frame msgs':>10} {'track msgs':>10} {'new/upd/end':>12}"
    )
    for r in rows:
        k = r["track_events"]
        print(
            f"{r['clip']:26} {r['frames']:6d} {r['tracks']:6d} {r['raw_flip_rate']:9.3f} "
            f"{r['smoothed_flip_rate']:9.3f} {r['frame_messages']:10d} {r['per_track_messages']:10d} "
            f"{k['new']:>4}/{k['update']}/{k['end']}"
        )
    if rows and not any(r["raw_flips"] for r in rows):
        print("note: the raw labels never changed within a track: is this the placeholder model?")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
