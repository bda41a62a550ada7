"""Vision models at batch 1 on the CPU (issue #17): images/s of each runner, one image per
call as the worker runs them, and of the web tier's validation (`clean_image`).

Images: a 640x200 page of printed text for OCR, scikit-image's 512x512 astronaut photo for
face detection; both go through `clean_image` first, so the runners see what a worker
reads. The first call of each model (loading it) is not timed. Each repeat times
`images` calls back to back; figures are medians over repeats with the min-max spread.

    .venv/bin/python -m bench.vision [--repeats 5] [--images 10]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

from bench.runtime import demo_specs, setup_django, spread

MODELS = {"rapidocr-pp-ocrv4": "text page", "mtcnn-face-detection": "astronaut photo"}


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def sample_images() -> dict[str, bytes]:
    """Encoded PNGs as a client would send them, by what they show."""
    from PIL import Image, ImageDraw, ImageFont
    from skimage import data

    page = Image.new("RGB", (640, 200), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=40)
    draw.text((20, 30), "Invoice number 4217", fill="black", font=font)
    draw.text((20, 110), "Total due: 96 euros", fill="black", font=font)
    return {"text page": _png(page), "astronaut photo": _png(Image.fromarray(data.astronaut()))}


def images_per_second(action: Callable[[], Any], images: int, repeats: int) -> dict[str, float]:
    action()  # warm: loads the model, fills caches
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(images):
            action()
        rates.append(images / (time.perf_counter() - started))
    return spread(rates)


def run(repeats: int = 5, images: int = 10) -> dict[str, Any]:
    from inference.images import clean_image
    from inference.runners import get_runner

    specs = demo_specs()
    samples = sample_images()
    results: dict[str, Any] = {"models": {}, "validation": {}}
    for slug, shows in MODELS.items():
        spec = specs[slug]
        clean = clean_image(samples[shows], "input.image").data
        runner = get_runner(spec.task)

        def call(spec=spec, runner=runner, clean=clean) -> Any:
            return list(runner.run(spec, {"image": clean}))

        results["models"][slug] = {"image": shows, **images_per_second(call, images, repeats)}
    for shows, raw in samples.items():
        results["validation"][shows] = images_per_second(
            lambda raw=raw: clean_image(raw, "input.image"), images, repeats
        )
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = ["| model | image | images/s (median) | min-max |", "| --- | --- | --- | --- |"]
    for slug, stats in results["models"].items():
        lines.append(
            f"| {slug} | {stats['image']} | {stats['median']:.2f} "
            f"| {stats['min']:.2f}-{stats['max']:.2f} |"
        )
    for shows, stats in results["validation"].items():
        lines.append(
            f"| web validation (`clean_image`) | {shows} | {stats['median']:.1f} "
            f"| {stats['min']:.1f}-{stats['max']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args()
    setup_django()
    print("\n".join(table(run(args.repeats, args.images))))


if __name__ == "__main__":
    main()
