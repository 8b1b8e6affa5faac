"""What the export to another framework's schema and the import back share, so that a record survives
the trip: the record ``id`` and ``meta`` ride along as extra keys (ignored by TRL and ms-swift), and a
record with several rejected responses becomes one row per rejected response (neither schema has a
list of them); rows that share an id are merged back into one record on import.

Neither schema has a context field: an export writes the context into the user turn with
``CONTEXT_TEMPLATE`` (the collator's default ``data.context_template``), so the model sees it there.
"""

from __future__ import annotations

import json
from typing import Any

from mmpo.data.converters.base import BadRow

CONTEXT_TEMPLATE = "{prompt}\nContext:\n{context}"


def carried_id(row: dict, source: str, index: int) -> str:
    value = row.get("id")
    return value if isinstance(value, str) and value else f"{source}-{index:06d}"


def carried_meta(row: dict, source: str, system: str | None) -> dict[str, Any]:
    """The exported ``meta`` (an object in JSON, JSON text in arrow), else ``{"source": source}``."""
    value = row.get("meta")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise BadRow("meta", f"is not valid JSON: {error}") from None
    meta = dict(value) if isinstance(value, dict) else {"source": source}
    if system:
        meta.setdefault("system", system)
    return meta


def user_text(prompt: str, context: str | None) -> str:
    return prompt if context is None else CONTEXT_TEMPLATE.format(prompt=prompt, context=context)
