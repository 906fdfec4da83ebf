"""Text on a picture, read with RapidOCR (PP-OCRv6 small models shipped inside the `rapidocr` package:
nothing is downloaded, tests/test_vision.py reads a label with the network unplugged)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from visassist.media.compose import Image

Box = tuple[float, float, float, float]  # x0, y0, x1, y1, normalized to the whole picture


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    box: Box


def _params(threads: int) -> dict[str, Any]:
    return {
        "Global.log_level": "warning",
        # The text detector sees the picture with its longest side at most 736 px (a 720p frame at
        # 58%): detection is most of the time and grows with the pixels; measured at 720p under load,
        # 1.0 s a reading against 1.4-1.9 s at 960 px, the same lines read (scripts/bench-vision).
        # Text is then recognised from the full-size picture. Print that is small in a 12 MP photo
        # can be missed; "Read region" on the live picture reads a part at full detail.
        "Det.limit_type": "max",
        "Det.limit_side_len": 736,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }


class TextReader:
    """One RapidOCR engine, loaded on first use; one picture at a time (its sessions use every core
    they are given, so two at once only share them)."""

    def __init__(self, threads: int = 2) -> None:
        self._threads = threads
        self._engine: Any = None
        self._warm = False
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._engine is None:
            from rapidocr import RapidOCR  # imported here: it configures logging and loads onnxruntime

            self._engine = RapidOCR(params=_params(self._threads))
            # It warns on every picture without text; a picture without text is no problem here.
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    def warm_up(self) -> None:
        """Read a line of text once: RapidOCR makes its recogniser's sessions (checking the model
        files' hashes) only when there is text to recognise, and that holds the GIL for a moment."""
        line = np.full((64, 320, 3), 255, np.uint8)
        cv2.putText(line, "SN VX-2231-A", (10, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
        with self._lock:
            if not self._warm:
                self._load()(line)
                self._warm = True

    def read(self, image: Image) -> list[TextLine]:
        height, width = image.shape[:2]
        with self._lock:
            result = self._load()(image)
        if result.txts is None or result.boxes is None:
            return []
        lines = []
        for text, score, box in zip(result.txts, result.scores, result.boxes, strict=True):
            xs, ys = box[:, 0], box[:, 1]
            lines.append(TextLine(str(text), round(float(score), 3), (
                max(0.0, float(xs.min()) / width), max(0.0, float(ys.min()) / height),
                min(1.0, float(xs.max()) / width), min(1.0, float(ys.max()) / height))))
        return lines
