"""BlazeFace on real images and real video frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.detectors import create_detector
from agent.detectors.base import Detection
from agent.detectors.blazeface import BlazeFaceDetector, BlazeFaceOptions, ssd_anchors, tile_windows
from agent.detectors.nms import nms
from agent.errors import DetectorError
from tests.agent_support import astronaut_bgr, read_frames

# The astronaut portrait (512x512): the face spans roughly x 170-290, y 60-200.
FACE_CENTRE_RANGE = ((190, 260), (95, 165))


@pytest.fixture(scope="module")
def short() -> BlazeFaceDetector:
    return BlazeFaceDetector(BlazeFaceOptions(range="short"))


def _centre(d: Detection) -> tuple[float, float]:
    return d.x + d.w / 2, d.y + d.h / 2


def _the_face(found: list[Detection]) -> Detection:
    assert found, "no face found"
    return max(found, key=lambda d: d.score)


def test_anchor_grids():
    assert ssd_anchors(128).shape == (896, 2)
    assert ssd_anchors(192).shape == (2304, 2)
    # first anchors sit in the centre of the first stride-8 cell, twice
    assert ssd_anchors(128)[0].tolist() == [4.0, 4.0] == ssd_anchors(128)[1].tolist()


def test_finds_the_astronaut(short):
    face = _the_face(short.detect(astronaut_bgr()))
    cx, cy = _centre(face)
    (x_lo, x_hi), (y_lo, y_hi) = FACE_CENTRE_RANGE
    assert x_lo <= cx <= x_hi and y_lo <= cy <= y_hi
    assert 60 <= face.w <= 160 and 0.8 <= face.w / face.h <= 1.25
    assert face.score >= 0.7


def test_letterbox_maps_boxes_back_to_the_frame(short):
    face_crop = np.ascontiguousarray(astronaut_bgr()[40:240, 130:330])  # 200x200 around the face
    ref = _the_face(short.detect(face_crop))
    # The same face scaled differently moves BlazeFace's box by a few pixels (here up to ~6% of the
    # face); a letterbox mapping error would be the padding, about 90 px in these canvases.
    tol = 0.08 * ref.w
    # the same crop inside a wide canvas (padding top/bottom in the letterbox), shifted by (220, 20)
    wide = np.zeros((260, 440, 3), np.uint8)
    wide[20:220, 220:420] = face_crop
    moved = _the_face(short.detect(wide))
    assert moved.x == pytest.approx(ref.x + 220, abs=tol)
    assert moved.y == pytest.approx(ref.y + 20, abs=tol)
    assert moved.w == pytest.approx(ref.w, rel=0.12)
    # and a tall canvas (padding left/right), shifted by (30, 200)
    tall = np.zeros((440, 260, 3), np.uint8)
    tall[200:400, 30:230] = face_crop
    moved = _the_face(short.detect(tall))
    assert moved.x == pytest.approx(ref.x + 30, abs=tol)
    assert moved.y == pytest.approx(ref.y + 200, abs=tol)


def test_scaled_frame_gives_scaled_box(short):
    img = astronaut_bgr()
    ref = _the_face(short.detect(img))
    half = _the_face(short.detect(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)))
    assert half.x * 2 == pytest.approx(ref.x, abs=8)
    assert half.w * 2 == pytest.approx(ref.w, rel=0.12)


def test_grayscale_frames_work(short):
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    cx, _ = _centre(_the_face(short.detect(gray)))
    assert FACE_CENTRE_RANGE[0][0] <= cx <= FACE_CENTRE_RANGE[0][1]


def test_no_face_in_a_flat_image(short):
    assert short.detect(np.full((360, 640, 3), 127, np.uint8)) == []


def test_min_face_size_filters_small_faces():
    img = cv2.resize(astronaut_bgr(), (256, 256))
    assert BlazeFaceDetector(BlazeFaceOptions(range="short")).detect(img)
    assert BlazeFaceDetector(BlazeFaceOptions(range="short", min_face_size=120)).detect(img) == []


def test_portrait_interview_frames(short):
    """The close-up interview: one frontal face in (nearly) every frame, of a plausible size."""
    frames = read_frames("news_interview_portrait", list(range(0, 1500, 100)))
    hits = 0
    for frame in frames:
        found = short.detect(frame)
        if found:
            hits += 1
            face = _the_face(found)
            assert 0.15 * frame.shape[1] <= face.w <= 0.9 * frame.shape[1]
            assert face.y < frame.shape[0] * 0.6  # head in the upper part of the picture
    assert hits >= 0.9 * len(frames)


def test_street_scene_needs_the_full_range_model():
    """1080p street scene at 640 px: faces are ~30 px, too small for the short-range model alone."""
    frames = read_frames("facenet_pytorch_video", [10, 40, 70, 100], max_width=640)
    auto = create_detector("blazeface", range="auto")
    short_only = create_detector("blazeface", range="short")
    auto_hits = sum(bool(auto.detect(f)) for f in frames)
    short_hits = sum(bool(short_only.detect(f)) for f in frames)
    assert auto_hits >= 3
    assert auto_hits > short_hits
    for f in frames:
        for d in auto.detect(f):
            assert 8 <= d.w <= 120 and d.x + d.w <= 640 and d.y + d.h <= f.shape[0]


def test_hamilton_frontal_frames(short):
    frames = read_frames("short_hamilton_clip", list(range(100, 275, 25)))
    found = [short.detect(f) for f in frames]
    assert sum(bool(x) for x in found) >= 2
    for faces in found:
        for d in faces:
            assert 30 <= d.w <= 250


def test_tiles_cover_the_frame():
    windows = tile_windows(640, 360, 3)
    assert windows[0] == (0, 0, 640, 360)
    covered = np.zeros((360, 640), bool)
    for x, y, w, h in windows[1:]:
        assert w == h and x + w <= 640 and y + h <= 360
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    assert tile_windows(640, 360, 1) == [(0, 0, 640, 360)]


def test_tiled_detection_agrees_with_whole_frame(short):
    img = astronaut_bgr()
    ref = _the_face(short.detect(img))
    tiled = _the_face(BlazeFaceDetector(BlazeFaceOptions(range="short", tiles=2)).detect(img))
    assert _centre(tiled) == pytest.approx(_centre(ref), abs=10)


def test_nms_merges_overlaps_and_keeps_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    kept, kept_scores = nms(boxes, scores, 0.3)
    assert len(kept) == 2
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7])
    # weighted: the merged box lies between the two overlapping ones
    assert 0 < kept[0][0] < 1
    plain, _ = nms(boxes, scores, 0.3, weighted=False)
    assert plain[0].tolist() == [0, 0, 10, 10]


def test_unknown_detector_name():
    with pytest.raises(DetectorError, match="unknown detector"):
        create_detector("yolo")


def test_bad_range_value():
    with pytest.raises(DetectorError, match="range"):
        create_detector("blazeface", range="medium")


def test_haar_was_removed_and_says_so_in_one_line():
    with pytest.raises(DetectorError) as err:
        create_detector("haar")
    message = str(err.value)
    assert "removed" in message and "'blazeface'" in message and "\n" not in message


def test_wrong_model_file_for_detector(tmp_path):
    bogus = tmp_path / "x.tflite"
    bogus.write_bytes(b"nope" * 10)
    with pytest.raises(DetectorError):
        create_detector("blazeface", range="short", model_path=bogus)


def test_auto_loads_the_full_range_model_only_when_short_range_finds_nothing():
    auto = BlazeFaceDetector(BlazeFaceOptions(range="auto"))
    assert len(auto._models) == 1  # a scene of near faces never pays for the second model
    assert auto.detect(astronaut_bgr())
    assert len(auto._models) == 1
    street = read_frames("facenet_pytorch_video", [40], max_width=640)[0]
    assert auto.detect(street)
    assert len(auto._models) == 2


def test_auto_checks_the_full_range_file_at_start(tmp_path):
    bogus = tmp_path / "full.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(DetectorError, match="not a TFLite model") as err:
        BlazeFaceDetector(BlazeFaceOptions(range="auto", full_range_model_path=bogus))
    assert "\n" not in str(err.value)
    with pytest.raises(DetectorError, match="not found"):
        BlazeFaceDetector(BlazeFaceOptions(range="auto", full_range_model_path=tmp_path / "missing"))


def test_shrink_is_the_area_filter_on_integer_ratios_and_close_to_it_otherwise():
    from agent.detectors.blazeface import shrink

    (frame,) = read_frames("short_hamilton_clip", [40])
    assert frame.shape[:2] == (360, 640)
    exact = cv2.resize(frame, (128, 72), interpolation=cv2.INTER_AREA)
    assert np.array_equal(shrink(frame, 128, 72), exact)
    area = cv2.resize(frame, (192, 108), interpolation=cv2.INTER_AREA).astype(np.int16)
    fast = shrink(frame, 192, 108).astype(np.int16)
    plain = cv2.resize(frame, (192, 108), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    assert fast.shape == area.shape
    # Close to the area filter (a mean difference of about one grey level), and much closer than an
    # aliased resize would be: the pyramid really low-passes before sampling.
    assert np.abs(fast - area).mean() < 1.5 < np.abs(plain - area).mean()
