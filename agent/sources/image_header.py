"""An image's size from its file header, without decoding it.

OpenCV only tells the size of an image once it has decoded it, and decoding an 8000x8000 photo at
full size takes ~370 MB. Knowing the size first lets the folder and image sources pick a reduced
decode (JPEG) or refuse a file beyond the pixel budget (formats that cannot decode reduced) before
a byte of pixels is allocated. Only the headers of the formats the sources accept are read here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn stand alone


@dataclass(frozen=True)
class ImageHeader:
    """``progressive``: a progressive JPEG, whose decoder holds the whole image's coefficients
    (about 3 bytes a pixel) whatever the output scale, unlike a baseline one."""

    format: str
    width: int
    height: int
    progressive: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(path: Path) -> ImageHeader | None:
    """The image's format and stored size (before any EXIF rotation), or None when the file is not
    one of the formats below or its header is cut short."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(32)
            for matches, reader in READERS:
                if matches(head):
                    return reader(f, head)
    except (OSError, struct.error):
        return None
    return None


def _sized(fmt: str, width: int, height: int, *, progressive: bool = False) -> ImageHeader | None:
    return ImageHeader(fmt, width, height, progressive) if width > 0 and height > 0 else None


def _jpeg(f: BinaryIO, _head: bytes) -> ImageHeader | None:
    """Walk the segments up to the first start-of-frame (EXIF, ICC and XMP segments come first and
    may be long: each one is skipped by its length, not read)."""
    f.seek(2)
    while byte := f.read(1):
        if byte != b"\xff":
            continue  # tolerate padding between segments, as libjpeg does
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        code = marker[0] if marker else 0xD9
        if code in JPEG_NO_LENGTH or code == 0x00:
            continue
        # End of image, or scan data before any frame header: no size to find.
        raw = b"" if code in (0xD9, 0xDA) else f.read(2)
        (length,) = struct.unpack(">H", raw) if len(raw) == 2 else (0,)
        if code in JPEG_SOF:
            _precision, height, width = struct.unpack(">BHH", f.read(5))
            return _sized("jpeg", width, height, progressive=code in JPEG_PROGRESSIVE)
        if length < 2:
            return None
        f.seek(length - 2, 1)
    return None


def _png(_f: BinaryIO, head: bytes) -> ImageHeader | None:
    width, height = struct.unpack(">II", head[16:24])
    return _sized("png", width, height)


def _bmp(_f: BinaryIO, head: bytes) -> ImageHeader | None:
    (dib_size,) = struct.unpack("<I", head[14:18])
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return _sized("bmp", abs(width), abs(height))  # a negative height is a top-down bitmap


def _webp(_f: BinaryIO, head: bytes) -> ImageHeader | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return _sized("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        (bits,) = struct.unpack("<I", head[21:25])
        return _sized("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _sized("webp", width, height)
    return None


def _tiff(f: BinaryIO, head: bytes) -> ImageHeader | None:
    """The first image directory's ImageWidth (256) and ImageLength (257)."""
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    f.seek(offset)
    (count,) = struct.unpack(order + "H", f.read(2))
    sizes: dict[int, int] = {}
    for _ in range(min(count, 512)):
        entry = f.read(12)
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")  # SHORT or LONG, left-justified in the field
            sizes[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    return _sized("tiff", sizes.get(256, 0), sizes.get(257, 0))


def _pnm(f: BinaryIO, _head: bytes) -> ImageHeader | None:
    """``P1``-``P6``: magic, width, height as ASCII tokens, ``#`` comments to the end of a line."""
    f.seek(0)
    head = f.read(1024)
    tokens: list[bytes] = []
    for line in head.split(b"\n"):
        tokens.extend(line.split(b"#", 1)[0].split())
        if len(tokens) >= 3:
            break
    if len(tokens) < 3 or not tokens[1].isdigit() or not tokens[2].isdigit():
        return None
    return _sized("pnm", int(tokens[1]), int(tokens[2]))


Reader = Callable[[BinaryIO, bytes], ImageHeader | None]
READERS: tuple[tuple[Callable[[bytes], bool], Reader], ...] = (
    (lambda head: head.startswith(b"\xff\xd8"), _jpeg),
    (lambda head: head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR", _png),
    (lambda head: head.startswith(b"BM") and len(head) >= 26, _bmp),
    (lambda head: head.startswith(b"RIFF") and head[8:12] == b"WEBP", _webp),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*"), _tiff),
    (lambda head: len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456", _pnm),
)
"""Which header reader fits the file's first 32 bytes (its signature)."""
