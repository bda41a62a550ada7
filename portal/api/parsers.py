"""The REST API's JSON parser: `portal.strict_json` instead of the standard reader, so a
body that would pass validation and then fail at the INSERT, or poison every later read
of the row (NUL, unpaired surrogates, NaN, absurd nesting), is a 400 at the door."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from portal import strict_json


class StorableJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            return strict_json.loads(stream.read() if stream is not None else b"")
        except strict_json.UnsafeJSON as exc:
            raise ParseError(str(exc)) from exc
