"""What reading a snapshot costs, per picture, at 640x360, 1280x720 and a 12 MP photo:

  face blur        on the path to storing the snapshot (CenterFace through OpenCV's DNN)
  codes zxing-cpp  barcodes and QR codes, as visassist reads them
  codes OpenCV     the same with OpenCV's BarcodeDetector and QRCodeDetector, for the choice
  ocr              RapidOCR, text lines
  reading          codes, OCR and the field patterns together, as a stored snapshot is read

Then the pool: six 720p readings submitted at once to a thread pool with one worker using both cores
(visassist's), a thread pool with two workers using one core each, and a process pool with two
processes (whose first reading includes loading the models in that process).

The pictures are the tests' label (model, serial number, MAC address, EAN-13, QR) with a real face
photograph, scaled to each size. Median and p95 in milliseconds; the notes say what was read.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_vision import EAN, QR, label, with_face
from tests.utils import SERIAL
from visassist.vision.codes import read_codes
from visassist.vision.faces import FaceBlur
from visassist.vision.ocr import TextReader
from visassist.vision.patterns import DEFAULT_PATTERNS
from visassist.vision.reading import read_picture

SIZES = {"640x360": (640, 360), "1280x720": (1280, 720), "12 MP": (4000, 3000)}
EXPECTED = {"model": "XR-500", "serial_number": SERIAL, "mac_address": "00:1A:2B:3C:4D:5E", "ean": EAN,
            "qr": QR}


def timed(work: Callable[[], Any], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def opencv_codes(image: np.ndarray) -> list[str]:
    found: list[str] = []
    ok, texts, _, _ = cv2.barcode.BarcodeDetector().detectAndDecodeWithType(image)
    if ok:
        found += [t for t in texts if t]
    ok, texts, _, _ = cv2.QRCodeDetector().detectAndDecodeMulti(image)
    if ok:
        found += [t for t in texts if t]
    return sorted(found)


def row(picture: str, step: str, times: list[float], note: str) -> None:
    print(f"{picture:9} {step:16} {statistics.median(times):9.0f} {p95(times):7.0f}  {note}", flush=True)


_reader: TextReader | None = None


def _in_process(image: np.ndarray) -> tuple[float, int]:
    """A reading in a pool process, with that process's own models."""
    global _reader
    if _reader is None:
        _reader = TextReader(threads=1)
    started = time.perf_counter()
    reading = read_picture(image, _reader, DEFAULT_PATTERNS)
    return (time.perf_counter() - started) * 1000, len(reading.found)


def pools(image: np.ndarray, jobs: int) -> None:
    print(f"\n{jobs} readings of a 1280x720 picture submitted at once; ms from submitting to each result")
    print(f"{'pool':34} {'first':>7} {'median':>7} {'last':>7}")
    one = TextReader(threads=2)
    one.warm_up()
    local = threading.local()  # two workers, one reader each

    def own_reader() -> TextReader:
        if not hasattr(local, "reader"):
            local.reader = TextReader(threads=1)
            local.reader.warm_up()
        return local.reader  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(2) as warm:  # both workers' models, loaded beforehand
        list(warm.map(lambda _: (own_reader(), time.sleep(0.2)), range(2)))
    candidates: dict[str, tuple[concurrent.futures.Executor, Callable[[], Any]]] = {
        "threads: 1 worker x 2 cores": (concurrent.futures.ThreadPoolExecutor(1),
                                        lambda: read_picture(image, one, DEFAULT_PATTERNS)),
        "threads: 2 workers x 1 core": (concurrent.futures.ThreadPoolExecutor(2),
                                        lambda: read_picture(image, own_reader(), DEFAULT_PATTERNS)),
        "processes: 2 x 1 core": (concurrent.futures.ProcessPoolExecutor(2), lambda: None),
    }
    for name, (executor, work) in candidates.items():
        started = time.perf_counter()
        if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
            futures = [executor.submit(_in_process, image) for _ in range(jobs)]
        else:
            futures = [executor.submit(work) for _ in range(jobs)]
        done = []
        for future in concurrent.futures.as_completed(futures):
            future.result()
            done.append((time.perf_counter() - started) * 1000)
        executor.shutdown()
        print(f"{name:34} {done[0]:7.0f} {statistics.median(done):7.0f} {done[-1]:7.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="readings per figure (default 10)")
    parser.add_argument("--jobs", type=int, default=6, help="readings submitted at once to each pool")
    args = parser.parse_args()
    faces, reader = FaceBlur(), TextReader()
    faces.warm_up()
    reader.warm_up()
    base, _ = with_face(label())
    print(f"{os.cpu_count()} cores; milliseconds per picture")
    print(f"{'picture':9} {'step':16} {'median':>9} {'p95':>7}  notes")
    for name, size in SIZES.items():
        image = cv2.resize(base, size, interpolation=cv2.INTER_AREA if size[0] < 1280 else cv2.INTER_CUBIC)
        blurred, count = faces.blur(image)
        reading = read_picture(blurred, reader, DEFAULT_PATTERNS)
        found = {f.name: f.value for f in reading.found}
        exact = [k for k, v in EXPECTED.items() if found.get(k) == v]
        row(name, "face blur", timed(lambda image=image: faces.blur(image), args.rounds),
            f"{count} face blurred; after: {len(faces.detect(blurred))} found")
        row(name, "codes zxing-cpp", timed(lambda b=blurred: read_codes(b), args.rounds),
            f"{sorted(c.text[:24] for c in reading.codes)}")
        row(name, "codes OpenCV", timed(lambda b=blurred: opencv_codes(b), args.rounds),
            f"{[t[:24] for t in opencv_codes(blurred)]}")
        row(name, "ocr", timed(lambda b=blurred: reader.read(b), args.rounds), f"{len(reading.lines)} lines")
        row(name, "reading", timed(lambda b=blurred: read_picture(b, reader, DEFAULT_PATTERNS), args.rounds),
            f"{len(exact)}/{len(EXPECTED)} fields exact{'' if len(exact) == len(EXPECTED) else f': {found}'}")
    pools(cv2.resize(base, (1280, 720)), args.jobs)


if __name__ == "__main__":
    main()
