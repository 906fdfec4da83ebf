"""Barcodes and QR codes on a picture, read with zxing-cpp.

Chosen over OpenCV's detectors by measurement (scripts/bench-vision): one call reads every 1D and 2D
format (OpenCV needs one detector for 1D codes and another for QR, and reads no Data Matrix), its 1D
reads are checksum-verified, and it took a third to half of OpenCV's time at 720p and 12 MP. Bars
under about 2 px wide are the one place OpenCV read and zxing-cpp did not (an EAN-13 in a 640x360
frame), so a small picture is also read enlarged, which costs about 20 ms."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import zxingcpp

from visassist.media.compose import Image
from visassist.vision.ocr import Box

ENLARGE_BELOW = 1280  # px, the picture's width: narrower ones are also read enlarged to this width


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
    codes = _read(image)
    width = image.shape[1]
    if width < ENLARGE_BELOW:
        scale = ENLARGE_BELOW / width
        enlarged = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC),
                              dtype=np.uint8)
        seen = {(c.format, c.text) for c in codes}
        codes += [c for c in _read(enlarged) if (c.format, c.text) not in seen]
    return codes


def _read(image: Image) -> list[Code]:
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
