"""`python -m coach.probe URL`: exit 0 when the URL answers 2xx within 3 s. The image's
HEALTHCHECK uses it so the runtime image needs neither curl nor a shell."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("http://"):
        print("usage: python -m coach.probe http://HOST:PORT/PATH", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[0], timeout=3) as response:  # noqa: S310 - http only
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
