"""Image validation in the web tier (issue #17): every image a worker reads went through
`clean_image` first, and the worker reads only the bytes it wrote.

The checks, cheapest first: size, then the format by content (PNG, JPEG or WebP, nothing
else is even parsed), then the dimensions the header declares (a decompression bomb is
refused before a pixel is decoded), then a full decode (a truncated file fails here),
then nothing may follow the image's own end (a polyglot: a PNG that is also a ZIP or an
HTML page). What is stored is a new encoding of the decoded pixels, turned upright by
its EXIF orientation (boxes are in pixels as displayed) and carrying no metadata at all
(no EXIF, GPS, ICC or text chunks).

Re-encoding: PNG stays PNG (lossless: text for OCR keeps its edges), WebP becomes PNG (it
is often a lossless screenshot; WebP's own encoder is not needed by the workers), JPEG
becomes JPEG at quality 95. Pixels are RGB, or RGBA where the image has transparency.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from portal.errors import InvalidInput

# Pillow format name -> the media type it is stored and reported as.
ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
STORED_FORMAT = {"PNG": "PNG", "WEBP": "PNG", "JPEG": "JPEG"}
STORED_TYPE = {"PNG": "image/png", "JPEG": "image/jpeg"}
JPEG_QUALITY = 95
PNG_END = b"IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"
DATA_URI_RE = re.compile(r"^data:image/(png|jpeg|webp);base64,", re.IGNORECASE)
FILE_REF_RE = re.compile(r"^file:([a-z0-9]{1,64})\Z")
# The input fields that hold an image, by task (API.md "Model inputs").
IMAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "ocr": ("image",),
    "object-detection": ("image",),
}


def image_fields(task: str) -> tuple[str, ...]:
    return IMAGE_FIELDS.get(task, ())


@dataclass(frozen=True)
class CleanImage:
    """Validated, re-encoded bytes: the only image bytes ever stored."""

    data: bytes
    content_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return "png" if self.content_type == "image/png" else "jpg"


def _refuse(param: str, why: str) -> InvalidInput:
    return InvalidInput(f"{param} {why}", param=param, code="invalid_image")


def check_dimensions(width: int, height: int, param: str) -> None:
    side, pixels = settings.IMAGE_MAX_SIDE, settings.IMAGE_MAX_PIXELS
    if width < 1 or height < 1:
        raise _refuse(param, "has no pixels.")
    if width > side or height > side:
        raise _refuse(param, f"is {width}x{height} pixels; at most {side} pixels a side.")
    if width * height > pixels:
        raise _refuse(param, f"is {width}x{height} pixels; at most {pixels} pixels in all.")


def check_ends_cleanly(raw: bytes, image_format: str, param: str) -> None:
    """Nothing may follow the image's end marker: a file that is an image and something
    else (a ZIP, a script) is refused, not silently cut."""
    if image_format == "PNG":
        clean = raw.endswith(PNG_END)
    elif image_format == "JPEG":
        clean = raw.endswith(JPEG_END)
    else:  # RIFF: the header's size covers exactly the rest of the file
        clean = len(raw) >= 8 and struct.unpack("<I", raw[4:8])[0] + 8 == len(raw)
    if not clean:
        raise _refuse(param, "has data after the end of the image.")


def _upright(image: Image.Image) -> Image.Image:
    """The decoded pixels as displayed, in RGB or RGBA, on a fresh image with no metadata."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    clean = image.convert("RGBA" if has_alpha else "RGB")
    clean.info = {}
    return clean


def clean_image(raw: bytes, param: str, declared_type: str | None = None) -> CleanImage:
    """The stored form of `raw`, or InvalidInput (a 400) saying what is wrong with it."""
    if len(raw) > settings.IMAGE_MAX_BYTES:
        raise _refuse(param, f"is larger than {settings.IMAGE_MAX_BYTES} bytes.")
    if not raw:
        raise _refuse(param, "is empty.")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning: ours (check_dimensions) is stricter and comes first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=list(ACCEPTED_FORMATS)) as image:
                # A phone's JPEG with a second picture (MPO) is a JPEG: its first one.
                image_format = "JPEG" if image.format == "MPO" else image.format or ""
                if image_format not in ACCEPTED_FORMATS:
                    raise _refuse(param, "is not a PNG, JPEG or WebP image.")
                check_dimensions(*image.size, param)
                image.load()
                check_ends_cleanly(raw, image_format, param)
                if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
                    raise _refuse(param, "is animated; send a single image.")
                upright = _upright(image)
    except InvalidInput:
        raise
    except Image.DecompressionBombError:
        # Pillow's own guard, on the header alone, far above ours: a bomb.
        side, pixels = settings.IMAGE_MAX_SIDE, settings.IMAGE_MAX_PIXELS
        raise _refuse(
            param, f"declares too many pixels (at most {side} pixels a side, {pixels} in all)."
        ) from None
    except UnidentifiedImageError:
        raise _refuse(param, "is not a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise _refuse(param, "is not a complete, readable image.") from None
    if declared_type and declared_type.lower() != ACCEPTED_FORMATS[image_format]:
        raise _refuse(param, f"is declared {declared_type} but its content is not.")
    stored = STORED_FORMAT[image_format]
    out = io.BytesIO()
    if stored == "JPEG":
        upright.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        upright.save(out, "PNG")
    return CleanImage(out.getvalue(), STORED_TYPE[stored], upright.width, upright.height)


def max_data_uri_chars() -> int:
    """The longest data: URI whose image can be within IMAGE_MAX_BYTES."""
    return len("data:image/jpeg;base64,") + 4 * (settings.IMAGE_MAX_BYTES // 3 + 1)


def decode_data_uri(uri: str, param: str) -> tuple[bytes, str]:
    """(bytes, declared media type) of a `data:image/...;base64,` URI."""
    match = DATA_URI_RE.match(uri)
    if match is None:
        raise _refuse(param, "must be a data:image/(png|jpeg|webp);base64 URI or file:<id>.")
    if len(uri) > max_data_uri_chars():
        raise _refuse(param, f"is larger than {settings.IMAGE_MAX_BYTES} bytes.")
    try:
        raw = base64.b64decode(uri[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(param, "is not valid base64.") from None
    return raw, f"image/{match.group(1).lower()}"


def file_ref(value: str) -> str | None:
    """The file id of a `file:<id>` reference, else None."""
    match = FILE_REF_RE.match(value)
    return match.group(1) if match else None


def open_stored(data: bytes) -> Image.Image:
    """A stored image (already clean) decoded for a runner: RGB pixels, transparent ones
    on white (as a viewer shows them, and dark text stays readable)."""
    with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
        if image.mode != "RGBA":
            return image.convert("RGB")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        return flat
