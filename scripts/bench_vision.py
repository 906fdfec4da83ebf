"""Time per picture of what a snapshot costs: face blur (on the path to storing it), barcode and QR
reading, OCR and the whole reading (in the background), at 640x360, 1280x720 and a 12 MP photo.

Pictures are the tests' label (serial number, model, MAC, EAN-13, QR) with a real face photograph,
scaled to each size. Prints median and p95 per step, and whether the serial number was read exactly."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_vision import label, with_face
from tests.utils import SERIAL
from visassist.vision.codes import read_codes
from visassist.vision.faces import FaceBlur
from visassist.vision.ocr import TextReader
from visassist.vision.patterns import DEFAULT_PATTERNS
from visassist.vision.reading import read_picture

SIZES = {"640x360": (640, 360), "1280x720": (1280, 720), "12MP 4000x3000": (4000, 3000)}


def timed(work: object, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    faces, reader = FaceBlur(), TextReader()
    faces.warm_up()
    reader.warm_up()
    base, _ = with_face(label())
    print(f"{'picture':16} {'step':10} {'median ms':>10} {'p95 ms':>8}  notes")
    for name, size in SIZES.items():
        image = cv2.resize(base, size, interpolation=cv2.INTER_AREA if size[0] < 1280 else cv2.INTER_CUBIC)
        blurred, count = faces.blur(image)
        reading = read_picture(blurred, reader, DEFAULT_PATTERNS)
        serial = [f.value for f in reading.found if f.name == "serial_number"]
        rows = {
            "face blur": (timed(lambda image=image: faces.blur(image), args.rounds), f"{count} face(s) blurred"),
            "codes": (timed(lambda b=blurred: read_codes(b), args.rounds),
                      f"{sorted(c.text for c in reading.codes)}"),
            "ocr": (timed(lambda b=blurred: reader.read(b), args.rounds),
                    f"serial {'exact' if serial == [SERIAL] else serial}"),
            "reading": (timed(lambda b=blurred: read_picture(b, reader, DEFAULT_PATTERNS), args.rounds),
                        f"{len(reading.found)} fields"),
        }
        for step, (times, note) in rows.items():
            print(f"{name:16} {step:10} {statistics.median(times):10.0f} {p95(times):8.0f}  {note}", flush=True)


if __name__ == "__main__":
    main()
