"""An image's pixel size read from its header, before any decoding, for every format vggedge decodes.

:func:`image_size` reads PNG, JPEG, GIF, BMP, WebP (lossy, lossless, extended),
TIFF and PNM headers, so a pixel limit is enforced before a decoder allocates
anything: a 10 KB file may declare a 20000x20000 image. :func:`jpeg_end` finds
the end of a JPEG's image data, so data a phone appends after it (Motion Photos,
maker notes) is told apart from a truncated file.
"""
from __future__ import annotations

import re
import struct
from typing import Optional

Size = Optional[tuple[int, int]]
#: Larger images are refused from their header, before a decoder allocates (2**28: the largest WebP; 0.8 GB as BGR).
#: Every decoder checks it: the CPU decoder (preprocess.decode_image) and the GPU's (runtime/gpu/decode.py).
MAX_DECODE_PIXELS = 2**28
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker inside entropy-coded data


def image_size(data: bytes | memoryview) -> Size:
    """(width, height) from the header; None when the format is unknown or the header unreadable."""
    head = bytes(data[:32])
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return _gif_size(data)
        if head.startswith(b"BM"):
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(bytes(data[:64]))
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if head[:1] == b"P" and head[1:2] in b"123456":
            return _pnm_size(bytes(data[:1024]))
    except (struct.error, IndexError, ValueError):
        return None
    return None


def jpeg_sof(data) -> tuple[int, int] | None:
    """(marker, offset) of a JPEG's frame header (SOFn), walking its markers from the start; None when none
    comes before the scan (or the markers are broken)."""
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in _JPEG_SOF:
            return marker, pos
        if marker in (0xDA, 0xD9):
            return None
        pos += 2 + struct.unpack(">H", bytes(data[pos + 2:pos + 4]))[0]
    return None


def _jpeg_size(data) -> Size:
    found = jpeg_sof(data)
    if found is None:
        return None
    height, width = struct.unpack(">HH", bytes(data[found[1] + 5:found[1] + 9]))
    return width, height


def _gif_size(data) -> Size:
    """The logical screen, grown to any frame that reaches beyond it (the decoder allocates both)."""
    width, height = struct.unpack("<HH", bytes(data[6:10]))
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # image descriptor
            left, top, w, h, fl = struct.unpack("<HHHHB", bytes(data[pos + 1:pos + 10]))
            width, height = max(width, left + w), max(height, top + h)
            pos += 10 + (3 * 2 ** ((fl & 7) + 1) if fl & 0x80 else 0) + 1  # + LZW minimum code size
            pos = _gif_skip_blocks(data, pos)
        elif block == 0x21:  # extension
            pos = _gif_skip_blocks(data, pos + 2)
        else:  # trailer or garbage
            break
    return width, height


def _gif_skip_blocks(data, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def _webp_size(head: bytes) -> Size:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_size(data) -> Size:
    """The largest image of any IFD (a TIFF may hold several pages; decoders may read any)."""
    order = "<" if bytes(data[:2]) == b"II" else ">"
    buf = bytes(data)
    (ifd,) = struct.unpack_from(order + "I", buf, 4)
    best: Size = None
    seen: set[int] = set()
    while ifd and ifd not in seen and len(seen) < 64:
        seen.add(ifd)
        (count,) = struct.unpack_from(order + "H", buf, ifd)
        width = height = None
        for i in range(count):
            tag, kind, _ = struct.unpack_from(order + "HHI", buf, ifd + 2 + 12 * i)
            if tag in (256, 257):
                fmt = order + ("H" if kind == 3 else "I")
                (value,) = struct.unpack_from(fmt, buf, ifd + 10 + 12 * i)
                if tag == 256:
                    width = value
                else:
                    height = value
        if width is None or height is None:
            return None
        if best is None or width * height > best[0] * best[1]:
            best = (width, height)
        (ifd,) = struct.unpack_from(order + "I", buf, ifd + 2 + 12 * count)
    return best


def _pnm_size(head: bytes) -> Size:
    text = re.sub(rb"#[^\n]*", b" ", head[2:])
    fields = text.split()
    if len(fields) < 2:
        return None
    return int(fields[0]), int(fields[1])


def jpeg_end(data: bytes | memoryview) -> Optional[int]:
    """The offset just past a JPEG's end-of-image marker; None when the image data stops before it (truncated).

    Walks the marker segments and, in each scan, skips entropy-coded data (stuffed
    ``FF 00`` bytes and restart markers) to the next marker, so an EOI inside an
    EXIF thumbnail or data appended after the image never counts.
    """
    buf = bytes(data)
    pos = 2
    while pos + 2 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if pos + 4 > len(buf):
            return None
        (length,) = struct.unpack(">H", buf[pos + 2:pos + 4])
        pos += 2 + length
        if marker == 0xDA:  # a scan: entropy-coded data runs to the next marker
            found = _JPEG_MARKER.search(buf, pos)
            if found is None:
                return None
            pos = found.start()
    return None
