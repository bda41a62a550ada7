"""JSON bodies that the database can store.

PostgreSQL's `text` and `jsonb` refuse the NUL character, so a body carrying `\\u0000`
anywhere (a key or a string) would pass validation and then fail at the INSERT as a 500.
It is refused at the door instead, with the same 400 as malformed JSON.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

NUL_MESSAGE = "Text in the body may not contain the NUL character (\\u0000)."


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


class StorableJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError(NUL_MESSAGE)
        return data
