"""Barcodes and QR codes on a picture, read with zxing-cpp.

Chosen over OpenCV's detectors by measurement (scripts/bench-vision): one call reads every 1D and 2D
format (OpenCV needs one detector for 1D codes and another for QR, and reads no Data Matrix), in
about the same time, and its 1D reads are checksum-verified."""

from __future__ import annotations

from dataclasses import dataclass

import zxingcpp

from visassist.media.compose import Image
from visassist.vision.ocr import Box


@dataclass(frozen=True)
class Code:
    format: str  # "EAN-13", "QR Code", "Code 128", ... as zxing-cpp names them
    text: str
    box: Box

    @property
    def field(self) -> str:
        """The field name of its chip: ean, upc, qr, data_matrix or code."""
        name = self.format.lower()
        if name.startswith("ean"):
            return "ean"
        if name.startswith("upc"):
            return "upc"
        if "qr" in name:
            return "qr"
        if "datamatrix" in name.replace(" ", ""):
            return "data_matrix"
        return "code"


def read_codes(image: Image) -> list[Code]:
    height, width = image.shape[:2]
    codes = []
    for found in zxingcpp.read_barcodes(image):
        if not found.valid or not found.text:
            continue
        position = found.position
        points = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
        xs, ys = [p.x for p in points], [p.y for p in points]
        box = (max(0.0, min(xs) / width), max(0.0, min(ys) / height),
               min(1.0, max(xs) / width), min(1.0, max(ys) / height))
        codes.append(Code(str(found.format), found.text, box))
    return codes
