"""One reading of a picture: its text lines, its codes, and the fields the patterns find in them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from visassist.media.compose import Image
from visassist.vision.codes import Code, read_codes
from visassist.vision.ocr import Box, TextLine, TextReader
from visassist.vision.patterns import FieldPattern, find_fields

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 normalized: the part of the picture to read


@dataclass(frozen=True)
class Found:
    """A value the agent may confirm: a field a pattern found in the text, or a code's content."""

    name: str  # serial_number, model, mac_address, imei, ean, upc, qr, data_matrix, code, ...
    value: str
    confidence: float
    source: str  # "text" or the code's format ("EAN-13", "QR Code", ...)
    box: Box


@dataclass(frozen=True)
class Reading:
    width: int
    height: int
    lines: list[TextLine]
    codes: list[Code]
    found: list[Found]
    duration_ms: int
    region: Region | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _crop(image: Image, region: Region | None) -> tuple[Image, int, int]:
    if region is None:
        return image, 0, 0
    height, width = image.shape[:2]
    x0, y0 = int(region[0] * width), int(region[1] * height)
    x1, y1 = max(x0 + 1, int(region[2] * width)), max(y0 + 1, int(region[3] * height))
    return image[y0:y1, x0:x1], x0, y0


def _to_whole(box: Box, crop: Image, x0: int, y0: int, image: Image) -> Box:
    """A box normalized to the crop, normalized to the whole picture instead."""
    ch, cw = crop.shape[:2]
    height, width = image.shape[:2]
    return ((x0 + box[0] * cw) / width, (y0 + box[1] * ch) / height,
            (x0 + box[2] * cw) / width, (y0 + box[3] * ch) / height)


def read_picture(image: Image, reader: TextReader, patterns: tuple[FieldPattern, ...],
                 region: Region | None = None) -> Reading:
    """Text, codes and fields of `image` (or of `region` of it); CPU work for the vision pool."""
    started = time.perf_counter()
    crop, x0, y0 = _crop(image, region)
    codes = [Code(c.format, c.text, _to_whole(c.box, crop, x0, y0, image)) for c in read_codes(crop)]
    coded = time.perf_counter()
    lines = [TextLine(t.text, t.confidence, _to_whole(t.box, crop, x0, y0, image)) for t in reader.read(crop)]
    done = time.perf_counter()
    found = [Found(m.name, m.value, lines[m.line].confidence, "text", lines[m.line].box)
             for m in find_fields([t.text for t in lines], patterns)]
    # A code's content is checked by its own checksum: as sure as a read gets.
    found += [Found(c.field, c.text, 1.0, c.format, c.box) for c in codes]
    return Reading(width=image.shape[1], height=image.shape[0], lines=lines, codes=codes, found=found,
                   duration_ms=round((done - started) * 1000), region=region,
                   timings={"codes_ms": (coded - started) * 1000, "text_ms": (done - coded) * 1000})
