"""Text the API accepts: no control characters (Unicode category Cc: C0, DEL and C1) and no
lone surrogates (which Python's JSON decoder lets through and no database can encode).

They have no business in a title or a question, terminals and log viewers interpret some of
them, and PostgreSQL refuses NUL in text outright (SQLite stores it, so only PostgreSQL would
notice, after the work was done). Source code and questions keep the whitespace controls that
text is made of.
"""

from __future__ import annotations

import re
from functools import cache

LINE_BREAKS_AND_TABS = "\t\n\r"
# Form feed: a page break in source files (PEP 8 mentions it; GNU sources use it).
SOURCE_WHITESPACE = LINE_BREAKS_AND_TABS + "\f"
CONTROLS = tuple(chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)))


@cache
def _pattern(allowed: str) -> re.Pattern[str]:
    refused = "".join(f"\\x{ord(c):02x}" for c in CONTROLS if c not in allowed)
    return re.compile(f"[{refused}\\ud800-\\udfff]")


def refuse_controls(value: str, *, allowed: str = "") -> str:
    """`value` unchanged, or ValueError naming the first control character and where it is."""
    found = _pattern(allowed).search(value)
    if found is not None:
        code = ord(found.group())
        raise ValueError(
            f"U+{code:04X} at position {found.start()} is not allowed here "
            "(control characters and lone surrogates are refused)"
        )
    return value
