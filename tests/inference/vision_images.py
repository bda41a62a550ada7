"""Images for the vision tests, made here with Pillow and piexif (or taken from the photos
scikit-image ships): valid ones, and each kind of bad input API.md refuses."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import piexif
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skimage_data

# EXIF orientation 6: the camera was turned; viewers rotate the stored pixels 90 degrees
# clockwise to display the photo.
ROTATE_CW = 6
TEXT_LINES = ("Invoice number 4217", "Total due: 96 euros")


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def data_uri(raw: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def text_page() -> Image.Image:
    """Two lines of large black text on white, as a scan would have them."""
    page = Image.new("RGB", (640, 200), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(TEXT_LINES):
        draw.text((20, 30 + 80 * row), line, fill="black", font=font)
    return page


def astronaut() -> Image.Image:
    """scikit-image's 512x512 portrait of Eileen Collins: one face, near the top middle."""
    return Image.fromarray(skimage_data.astronaut())


def gps_exif(orientation: int = ROTATE_CW) -> bytes:
    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"N",
        piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (2400, 100)),
        piexif.GPSIFD.GPSLongitudeRef: b"E",
        piexif.GPSIFD.GPSLongitude: ((2, 1), (21, 1), (300, 100)),
    }
    zeroth = {piexif.ImageIFD.Orientation: orientation, piexif.ImageIFD.Make: b"SecretCam"}
    return piexif.dump({"0th": zeroth, "GPS": gps})


def stored_sideways(image: Image.Image) -> bytes:
    """A JPEG whose pixels are `image` turned 90 degrees counter-clockwise, with EXIF that
    says to turn it back (and where it was taken): displayed, it is `image`."""
    sideways = image.transpose(Image.Transpose.ROTATE_90)
    return encode(sideways, "JPEG", quality=95, exif=gps_exif(ROTATE_CW))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height`: decoding it would allocate
    gigabytes. Only its header and one small compressed row are real."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: they do not compress, so the file is about width x height x 3."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def upload(client, raw: bytes, name: str = "photo.png", content_type: str = "image/png"):
    """POST /api/v1/files with `raw` as the multipart `file`."""
    return client.post("/api/v1/files", {"file": SimpleUploadedFile(name, raw, content_type)})
