"""Browser libraries installed from npm (package.json), served as static files under
`vendor/`.

`make install` runs `npm ci`; nothing from node_modules is committed. Only the files the
pages load are listed here, so collectstatic copies about half a megabyte instead of the
packages' every build, language and theme. Each file keeps its own name, so that the
`sourceMappingURL` a minified file ends with still points at its map (collectstatic's
manifest storage rewrites that reference and fails on a missing map).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Warning as CheckWarning
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor"
# Under node_modules: the file each page loads, and the maps the minified ones point at.
FILES = (
    "marked/lib/marked.umd.js",
    "marked/lib/marked.umd.js.map",
    "dompurify/dist/purify.min.js",
    "dompurify/dist/purify.min.js.map",
    "@highlightjs/cdn-assets/highlight.min.js",
    "@highlightjs/cdn-assets/styles/github-dark.min.css",
)


def node_modules() -> Path:
    return Path(settings.BASE_DIR) / "node_modules"


def sources() -> dict[str, Path]:
    """`vendor/<file name>` -> the file in node_modules."""
    return {f"{PREFIX}/{Path(name).name}": node_modules() / name for name in FILES}


class VendorFinder(BaseFinder):
    """A staticfiles finder for exactly the files in FILES (see the module's docstring)."""

    def check(self, **kwargs) -> list[CheckWarning]:
        missing = [str(path) for path in sources().values() if not path.is_file()]
        if not missing:
            return []
        return [
            CheckWarning(
                f"{len(missing)} browser library file(s) are missing, e.g. {missing[0]}.",
                hint="Run `make install` (npm ci): the playground renders plain text without them.",
                id="portal.W010",
            )
        ]

    def find(self, path: str, find_all: bool = False, **kwargs) -> str | list[str]:
        source = sources().get(path)
        found = str(source) if source is not None and source.is_file() else None
        if find_all:
            return [found] if found else []
        return found or []

    def list(self, ignore_patterns) -> Iterator[tuple[str, FileSystemStorage]]:
        for source in sources().values():
            if source.is_file():
                storage = FileSystemStorage(location=source.parent)
                storage.prefix = PREFIX  # collectstatic and WhiteNoise put it before the name
                yield source.name, storage
