"""Annotation composition with OpenCV: each shape lands where its normalized coordinates say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.utils import red_fraction
from visassist.annotations import shapes_adapter
from visassist.media.compose import compose

RED = "#ff0000"


def draw(*shapes: dict[str, object], width: int = 640, height: int = 360) -> np.ndarray:
    frame = np.full((height, width, 3), 40, dtype=np.uint8)
    out = compose(frame, shapes_adapter.validate_json(json.dumps(list(shapes))))
    assert (frame == 40).all(), "the raw frame is never drawn on"
    return out


@pytest.mark.parametrize(("shape", "inside", "outside"), [
    ({"kind": "rect", "points": [[0.1, 0.1], [0.4, 0.5]]}, (0.09, 0.2, 0.12, 0.4), (0.15, 0.2, 0.35, 0.4)),
    ({"kind": "ellipse", "points": [[0.5, 0.5], [0.9, 0.9]]}, (0.68, 0.48, 0.72, 0.53),
     (0.65, 0.65, 0.75, 0.75)),
    ({"kind": "freehand", "points": [[0.1, 0.8], [0.3, 0.8], [0.5, 0.8]]}, (0.15, 0.77, 0.45, 0.83),
     (0.1, 0.1, 0.5, 0.5)),
    ({"kind": "arrow", "points": [[0.1, 0.5], [0.9, 0.5]]}, (0.3, 0.48, 0.7, 0.52), (0.3, 0.1, 0.7, 0.3)),
    ({"kind": "text", "points": [[0.1, 0.5]], "text": "HERE", "width": 0.02}, (0.1, 0.35, 0.4, 0.5),
     (0.6, 0.6, 0.9, 0.9)),
])
def test_shape_lands_where_it_was_drawn(shape: dict[str, object], inside: tuple[float, ...],
                                        outside: tuple[float, ...]) -> None:
    out = draw({**shape, "color": RED})
    assert red_fraction(out, *inside) > 0.05
    assert red_fraction(out, *outside) == 0


def test_same_drawing_at_any_resolution() -> None:
    shape = {"kind": "rect", "color": RED, "points": [[0.25, 0.25], [0.75, 0.75]]}
    small, large = draw(shape, width=320, height=180), draw(shape, width=1920, height=1080)
    for image in (small, large):
        assert red_fraction(image, 0.24, 0.3, 0.26, 0.7) > 0.1
        assert red_fraction(image, 0.3, 0.3, 0.7, 0.7) == 0


def test_non_ascii_text_is_kept_in_vectors_and_drawn_safely() -> None:
    [shape] = shapes_adapter.validate_json(
        json.dumps([{"kind": "text", "points": [[0.1, 0.5]], "text": "Cañón ✓"}]))
    assert shape.text == "Cañón ✓"  # type: ignore[union-attr]
    draw({"kind": "text", "points": [[0.1, 0.5]], "text": "Cañón ✓", "color": RED})
