"""Annotation shapes as vector data in normalized 0..1 frame coordinates (independent of screen size)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Coordinate = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
# Stroke width as a fraction of the frame's height, so a stroke looks the same at any resolution.
StrokeWidth = Annotated[float, Field(ge=0.001, le=0.1, allow_inf_nan=False)]

MAX_SHAPES = 200
MAX_FREEHAND_POINTS = 2000


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    color: Color = "#ff3b30"
    width: StrokeWidth = 0.006


class Arrow(_Shape):
    """From the first point (tail) to the second (head)."""

    kind: Literal["arrow"]
    points: Annotated[list[Point], Field(min_length=2, max_length=2)]


class Rect(_Shape):
    """Two opposite corners."""

    kind: Literal["rect"]
    points: Annotated[list[Point], Field(min_length=2, max_length=2)]


class Ellipse(_Shape):
    """The ellipse inscribed in the box of two opposite corners (a circle when the box is square)."""

    kind: Literal["ellipse"]
    points: Annotated[list[Point], Field(min_length=2, max_length=2)]


class Freehand(_Shape):
    kind: Literal["freehand"]
    points: Annotated[list[Point], Field(min_length=2, max_length=MAX_FREEHAND_POINTS)]


class Text(_Shape):
    """Text whose baseline starts at the point; `width` scales the letters."""

    kind: Literal["text"]
    points: Annotated[list[Point], Field(min_length=1, max_length=1)]
    text: Annotated[str, Field(min_length=1, max_length=200)]


Shape = Annotated[Arrow | Rect | Ellipse | Freehand | Text, Field(discriminator="kind")]
Shapes = Annotated[list[Shape], Field(max_length=MAX_SHAPES)]
shapes_adapter: TypeAdapter[list[Shape]] = TypeAdapter(Shapes)
