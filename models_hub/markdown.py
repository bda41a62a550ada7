"""Model descriptions are Markdown written by publishers, so the HTML is sanitized.

`markdown` renders; `nh3` (an allow-list sanitizer) then drops scripts, event-handler
attributes, `style`, and links whose scheme is not http(s) or mailto (so `javascript:`
URLs go too). Images must come from this site (a relative path or SITE_URL) or be inline
`data:image/`: one on another host would be fetched by every visitor's browser, telling
that host who reads the card, so such an `<img>` is dropped. Raw HTML in the Markdown is
passed through to nh3 rather than escaped, so harmless tags such as <kbd> still work.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import markdown as md
import nh3
from django.conf import settings

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre",
    "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},
}
# "data" only gets past nh3 to reach `_filter_attribute`, which keeps it for images alone.
URL_SCHEMES = {"http", "https", "mailto", "data"}
EXTENSIONS = ["fenced_code", "tables", "sane_lists"]
# nh3 serializes every tag the same way, so an <img> left without src is easy to find.
IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def is_local_image(url: str) -> bool:
    """A path on this site, or an inline `data:image/...`: nothing another host sees."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "data":
        return parts.path.lower().startswith("image/")
    if not parts.scheme and not parts.netloc:
        return True
    return _origin(url.strip()) == _origin(settings.SITE_URL)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if is_local_image(value) else None
    if attribute == "href" and urlsplit(value.strip()).scheme.lower() == "data":
        return None
    return value


def render_markdown(text: str) -> str:
    html = md.markdown(text or "", extensions=EXTENSIONS, output_format="html")
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        attribute_filter=_filter_attribute,
        link_rel="noopener noreferrer nofollow",
    )
    return IMG_WITHOUT_SRC.sub("", clean)
