"""What a restore or an upgrade must keep: every row (a digest per table), every object's
sha256, the number of vectors — read through a data-operations target, as the tooling sees it."""

from __future__ import annotations

import asyncio

from coach.vectors import VectorStore
from ops.data import postgres
from ops.data.manifest import TABLES
from ops.data.restore import _object_digests
from ops.data.target import Target

ROW_DIGEST = "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY id)), '')"


def state(target: Target) -> dict[str, object]:
    settings = target.settings()
    return {
        "rows": {t: postgres.psql(target, f"{ROW_DIGEST} FROM {t} x")[0] for t in TABLES},
        "objects": asyncio.run(_object_digests(settings)),
        "vectors": VectorStore(settings).count(),
    }
