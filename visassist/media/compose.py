"""Drawing annotation shapes onto a frame with OpenCV, the same way the console draws them."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from visassist.annotations import Arrow, Ellipse, Freehand, Rect, Shape, Text

Image = npt.NDArray[np.uint8]

# Shared with static/js/annotate.js: arrow head length per stroke width, text height per stroke width.
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


def encode_png(image: Image) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(data.tobytes())
