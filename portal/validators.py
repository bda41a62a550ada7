"""Validators shared by models, forms and services."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Control characters (Cc: CR, LF, tab, ESC, NEL...) and the Unicode line and paragraph
# separators: none belongs in a name, and CR/LF in one break the e-mail headers it goes into.
NOT_IN_A_LINE = {"Cc", "Zl", "Zp"}


def validate_single_line(value: str) -> None:
    if any(unicodedata.category(char) in NOT_IN_A_LINE for char in value):
        raise ValidationError(
            "Must be a single line of text, without control characters.", code="not_single_line"
        )
