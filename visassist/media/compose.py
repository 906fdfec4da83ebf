"""Drawing annotation shapes onto a frame with OpenCV, the same way the console draws them."""

from __future__ import annotations

import math
import os
from typing import cast

# Read by OpenCV at its first decode: refuse images larger than this before allocating them.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))

import cv2
import numpy as np
import numpy.typing as npt

from visassist.annotations import Arrow, Ellipse, Freehand, Rect, Shape, Text

Image = npt.NDArray[np.uint8]

# Shared with static/js/components/annotator.js: arrow head length and text height per stroke width.
ARROW_HEAD_PER_WIDTH = 4.0
TEXT_HEIGHT_PER_WIDTH = 5.0


def _bgr(color: str) -> tuple[int, int, int]:
    value = int(color[1:], 16)
    return (value & 0xFF, (value >> 8) & 0xFF, value >> 16)


def compose(frame: Image, shapes: list[Shape]) -> Image:
    """A copy of `frame` (BGR) with `shapes` drawn on it; the frame itself is left untouched."""
    out = frame.copy()
    height, width = out.shape[:2]

    def px(point: tuple[float, float]) -> tuple[int, int]:
        return (round(point[0] * (width - 1)), round(point[1] * (height - 1)))

    for shape in shapes:
        color = _bgr(shape.color)
        thickness = max(1, round(shape.width * height))
        if isinstance(shape, Arrow):
            tail, head = px(shape.points[0]), px(shape.points[1])
            cv2.line(out, tail, head, color, thickness, cv2.LINE_AA)
            angle = math.atan2(head[1] - tail[1], head[0] - tail[0])
            size = ARROW_HEAD_PER_WIDTH * thickness + 4
            for side in (-1, 1):
                wing = angle + math.pi + side * math.pi / 6
                end = (round(head[0] + size * math.cos(wing)), round(head[1] + size * math.sin(wing)))
                cv2.line(out, head, end, color, thickness, cv2.LINE_AA)
        elif isinstance(shape, Rect):
            cv2.rectangle(out, px(shape.points[0]), px(shape.points[1]), color, thickness, cv2.LINE_AA)
        elif isinstance(shape, Ellipse):
            (x0, y0), (x1, y1) = px(shape.points[0]), px(shape.points[1])
            center = ((x0 + x1) // 2, (y0 + y1) // 2)
            axes = (abs(x1 - x0) // 2, abs(y1 - y0) // 2)
            cv2.ellipse(out, center, axes, 0, 0, 360, color, thickness, cv2.LINE_AA)
        elif isinstance(shape, Freehand):
            points = np.array([px(p) for p in shape.points], dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [points], False, color, thickness, cv2.LINE_AA)
        elif isinstance(shape, Text):
            text_height = TEXT_HEIGHT_PER_WIDTH * shape.width * height
            # Hershey fonts are ASCII only; anything else is drawn as '?', while the vector JSON keeps it.
            text = shape.text.encode("ascii", "replace").decode("ascii")
            scale = cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_SIMPLEX, max(1, round(text_height)),
                                               max(1, thickness // 2))
            cv2.putText(out, text, px(shape.points[0]), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                        max(1, thickness // 2), cv2.LINE_AA)
    return out


class PhotoError(ValueError):
    """An upload that is not an image we accept; the message is safe to show."""


PHOTO_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"RIFF": "WebP"}
MAX_PIXELS = int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])


def decode_photo(data: bytes, max_pixels: int = MAX_PIXELS) -> Image:
    """Decode an uploaded JPEG, PNG or WebP, refusing anything else and oversized images.

    OpenCV checks the pixel count in the header before it allocates (OPENCV_IO_MAX_IMAGE_PIXELS, set
    above), so a small file that would decode to a huge image (a decompression bomb) fails cheaply.
    """
    if not any(data.startswith(sig) for sig in PHOTO_SIGNATURES):
        raise PhotoError("not a JPEG, PNG or WebP image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PhotoError("the image could not be decoded, or it has too many pixels")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise PhotoError(f"the image has more than {max_pixels} pixels")
    return cast(Image, image)


def encode_png(image: Image) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(data.tobytes())
