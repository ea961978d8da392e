"""Still images as sources: sizes from headers, reduced decoding, the pixel budget, files that are
not images, and the agent's peak memory on an 8000x8000 photo (a real run in a subprocess)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import tests.agent_support as support
from agent.classifier import load_classifier
from agent.comms.stdout import StdoutPublisher
from agent.detectors import create_detector
from agent.errors import SourceError
from agent.events import SeqAllocator
from agent.pipeline import Pipeline, PipelineOptions
from agent.sources import open_source
from agent.sources.base import Frame
from agent.sources.files import ImageFileSource, ImageFolderSource, VideoFileSource
from agent.sources.image_header import read_header
from agent.sources.stills import decode_still

PEAK_LIMIT_MB = 300.0


def portrait(width: int, height: int) -> np.ndarray:
    """The astronaut portrait scaled to fill the middle of a grey ``width`` x ``height`` canvas."""
    canvas = np.full((height, width, 3), 90, np.uint8)
    side = min(width, height) // 2
    face = cv2.resize(support.astronaut_bgr(), (side, side), interpolation=cv2.INTER_CUBIC)
    y, x = (height - side) // 2, (width - side) // 2
    canvas[y : y + side, x : x + side] = face
    return canvas


@pytest.mark.parametrize(
    ("name", "params", "fmt", "progressive"),
    [
        ("a.jpg", [], "jpeg", False),
        ("a.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "jpeg", True),
        ("a.png", [], "png", False),
        ("a.bmp", [], "bmp", False),
        ("a.webp", [], "webp", False),
        ("a.webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "webp", False),  # lossless: the VP8L header
        ("a.tiff", [], "tiff", False),
        ("a.ppm", [], "pnm", False),
    ],
)
def test_headers_give_the_stored_size_without_decoding(tmp_path, name, params, fmt, progressive):
    path = tmp_path / name
    assert cv2.imwrite(str(path), portrait(123, 77), params)
    header = read_header(path)
    assert header is not None
    assert (header.format, header.width, header.height, header.progressive) == (fmt, 123, 77, progressive)


def test_a_jpeg_header_is_found_behind_long_segments(tmp_path):
    """EXIF with a thumbnail, ICC profiles and XMP come before the frame header; each is skipped by
    its length (a 60 KB APP1 here, as a camera writes) and the file still decodes."""
    ok, data = cv2.imencode(".jpg", portrait(321, 200))
    assert ok
    app1 = b"\xff\xe1" + (60_002).to_bytes(2, "big") + b"Exif\x00\x00" + b"\x00" * 59_994
    path = tmp_path / "camera.jpg"
    path.write_bytes(data.tobytes()[:2] + app1 + data.tobytes()[2:])
    header = read_header(path)
    assert header is not None and (header.width, header.height) == (321, 200)
    assert decode_still(path, max_width=640).image.shape == (200, 321, 3)


def test_files_that_are_not_images_have_no_header(tmp_path):
    (tmp_path / "notes.png").write_text("not an image, whatever its name says")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")  # ends before a frame header
    assert [read_header(tmp_path / n) for n in ("notes.png", "empty.jpg", "cut.jpg")] == [None] * 3


def test_a_large_jpeg_decodes_reduced_and_reports_its_full_size(tmp_path):
    """At a 640 px detection width the pipeline keeps 960 px of luma or more; the decode keeps at
    least that on the photo's shorter side (EXIF may turn it): 4000x3000 decodes at 1/2 (1500 px
    tall), 8000x8000 at 1/8. The frame says how big the photo is."""
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), portrait(4000, 3000))
    frame = next(iter(ImageFileSource(path, max_width=640)))
    assert frame.image is not None and frame.image.shape == (1500, 2000, 3)
    assert frame.full_size == (3000, 4000)
    assert frame.file == "photo.jpg" and frame.new_scene
    # max_width 0 asks for no scaling: decoded whole
    assert decode_still(path, max_width=0).image.shape == (3000, 4000, 3)
    # small enough already: decoded whole, no full_size
    assert decode_still(path, max_width=2000).full_size is None


def test_boxes_from_a_reduced_decode_are_in_the_photos_own_pixels(tmp_path, model_path):
    """The same 4000x3000 photo through the real pipeline, decoded at 1/2 by the source and at full
    size (the old way): same frame size in the event, boxes within a few pixels, same labels."""
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), portrait(4000, 3000))
    full = cv2.imread(str(path))

    class FullSize:
        name, live = "full", False

        def __iter__(self):
            yield Frame(index=0, timestamp=time.time(), image=full, file="photo.jpg")

        def close(self) -> None:
            pass

        def stats(self) -> dict[str, int]:
            return {"read": 1}

    detector, classifier = create_detector("blazeface"), load_classifier(model_path)
    results = []
    for i, source in enumerate((ImageFileSource(path, max_width=640), FullSize())):
        out = io.StringIO()
        pub = StdoutPublisher("dev", stream=out)
        pub.start()
        seq = SeqAllocator(tmp_path / str(i))
        Pipeline(source, detector, classifier, pub, seq, PipelineOptions(device_id="dev")).run()
        (event,) = [json.loads(line)["payload"] for line in out.getvalue().splitlines()]
        results.append(event)
    reduced, whole = results
    assert reduced["frame"]["width"] == whole["frame"]["width"] == 4000
    assert reduced["frame"]["height"] == whole["frame"]["height"] == 3000
    assert len(reduced["faces"]) == len(whole["faces"]) >= 1
    for a, b in zip(reduced["faces"], whole["faces"], strict=True):
        assert all(abs(p - q) <= 0.02 * b["box"][2] for p, q in zip(a["box"], b["box"], strict=True))
        x, y, w, h = a["box"]  # inside the portrait (1250..2750 x 750..2250), not in the decode's pixels
        assert x >= 1250 and y >= 750 and x + w <= 2750 and y + h <= 2250 and w > 150
        assert a["emotion"]["label"] == b["emotion"]["label"] and a["gender"]["label"] == b["gender"]["label"]


def test_an_image_beyond_the_pixel_budget_is_refused_by_name(tmp_path, caplog):
    """A PNG decodes whole whatever the output scale: its size is checked from the header first."""
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), portrait(2000, 1500))
    with pytest.raises(SourceError) as err:
        decode_still(path, max_width=320, max_pixels=2_000_000)
    message = str(err.value)
    assert "scan.png" in message and "2000x1500 PNG" in message and "\n" not in message
    assert decode_still(path, max_width=320, max_pixels=3_000_000).image.shape == (750, 1000, 3)
    # the same photo as a baseline JPEG decodes at 1/2 inside libjpeg and holds only that
    cv2.imwrite(str(tmp_path / "scan.jpg"), portrait(2000, 1500))
    jpeg = decode_still(tmp_path / "scan.jpg", max_width=320, max_pixels=2_000_000)
    assert jpeg.image.shape == (750, 1000, 3)


def test_a_file_that_is_neither_image_nor_video_fails_at_open_naming_it(tmp_path):
    text = tmp_path / "holiday.png"
    text.write_text("a text file with an image's name")
    with pytest.raises(SourceError) as err:
        open_source(str(text))
    assert "holiday.png" in str(err.value) and "\n" not in str(err.value)
    # FFmpeg opens such a file but has no frame for it: the video source checks the first frame at
    # open instead of running zero frames and ending as if all were well
    with pytest.raises(SourceError, match=r"holiday\.png"):
        VideoFileSource(text)


def test_the_cli_exits_non_zero_on_a_source_that_is_not_an_image(tmp_path, model_path):
    text = tmp_path / "holiday.png"
    text.write_text("a text file with an image's name")
    proc = support.run_cli(
        "run", "--source", str(text), "--sink", "stdout", "--model", str(model_path),
        "--state-dir", str(tmp_path / "state"), "--device-id", "t1",
    )  # fmt: skip
    support.assert_one_line_error(proc, "holiday.png")
    assert proc.stdout == ""  # failed before the publisher started


def test_a_folder_skips_a_file_it_cannot_decode_with_one_warning(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "a.png"), portrait(400, 300))
    (tmp_path / "b.png").write_text("not an image")
    cv2.imwrite(str(tmp_path / "c.jpg"), portrait(400, 300))
    source = ImageFolderSource(tmp_path)
    with caplog.at_level("WARNING", logger="agent.sources.files"):
        assert [f.file for f in source] == ["a.png", "c.jpg"]
    assert source.stats() == {"read": 2, "skipped": 1}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "b.png" in warning and "1 skipped" in warning


MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
    agent = [sys.executable, "-m", "agent.cli", *sys.argv[3:]]
    code = subprocess.run(agent, stdout=out, stderr=err).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mb(args: list[str], tmp_path) -> tuple[int, float, str, str]:
    """Runs ``python -m agent.cli ARGS`` from a small Python process and returns the agent's exit
    status, its peak RSS, stdout and stderr. Not straight from the test process: Linux carries the
    parent's resident size at fork into a child's ``ru_maxrss``, and pytest's holds models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(out), str(err), *args],
        capture_output=True, text=True, env=env, cwd=support.REPO, check=True,
    )  # fmt: skip
    code, max_rss_kb = proc.stdout.split()
    return int(code), int(max_rss_kb) / 1024, out.read_text(), err.read_text()


GENERATE = """
import sys, cv2, numpy as np
from tests.test_agent_stills import portrait
params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if sys.argv[1].endswith(".png") else []
cv2.imwrite(sys.argv[1], portrait(8000, 8000), params)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes, as Linux gives it")
def test_an_8000px_photo_runs_in_under_300_mb(tmp_path, model_path):
    """Decoded whole, an 8000x8000 JPEG took the agent to ~630 MB (a 1080p clip: ~130-160 MB). Decoded
    at 1/8 inside libjpeg it stays far below; the same photo as a PNG, which cannot decode reduced,
    is refused in one line before anything is allocated."""
    for name in ("photo.jpg", "photo.png"):  # made in a child: the test process stays small too
        subprocess.run([sys.executable, "-c", GENERATE, str(tmp_path / name)], check=True, cwd=support.REPO)
    common = ["--sink", "stdout", "--model", str(model_path), "--device-id", "t1"]
    jpeg = ["run", "--source", str(tmp_path / "photo.jpg"), "--state-dir", str(tmp_path / "s1"), *common]
    rc, peak, out, err = _peak_rss_mb(jpeg, tmp_path)
    assert rc == 0, err
    (event,) = support.payloads(out)
    assert (event["frame"]["width"], event["frame"]["height"]) == (8000, 8000)
    (face,) = event["faces"]
    x, y, w, h = face["box"]  # the portrait fills 2000..6000 on both axes; its face is inside that
    assert x >= 2000 and y >= 2000 and x + w <= 6000 and y + h <= 6000 and w > 400
    assert peak < PEAK_LIMIT_MB, f"peak RSS {peak:.1f} MB"

    png = ["run", "--source", str(tmp_path / "photo.png"), "--state-dir", str(tmp_path / "s2"), *common]
    rc, peak, out, err = _peak_rss_mb(png, tmp_path)
    lines = [line for line in err.splitlines() if line.startswith("facecast:")]
    assert rc != 0 and len(lines) == 1 and "photo.png" in lines[0] and "8000x8000" in lines[0], err
    assert out == "" and peak < PEAK_LIMIT_MB
