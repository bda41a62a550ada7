"""The REST API's JSON renderer: one row holding unencodable text never breaks a response.

Text with unpaired surrogates cannot be encoded as UTF-8. The parsers refuse it, but rows
stored before that (or by a database that does not check, like SQLite) would otherwise
turn every list that includes them into a 500. Such characters are shown as U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.renderers import JSONRenderer

# In a Python str every surrogate is unpaired: the JSON decoder joins escaped pairs.
SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(value: Any) -> Any:
    """A copy of `value` whose strings (keys included) can be encoded as UTF-8."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {replace_surrogates(key): replace_surrogates(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [replace_surrogates(item) for item in value]
    return value


class SafeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # Only the rare response that needs it pays for the copy.
            return super().render(replace_surrogates(data), accepted_media_type, renderer_context)
