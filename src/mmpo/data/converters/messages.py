"""Chat messages of the public formats: OpenAI-style ``role``/``content`` or ShareGPT ``from``/``value``.

A canonical record holds one user turn and its answers, so a conversation must be at most
``[system], user, [assistant]``; longer (multi-turn) conversations are bad rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmpo.data.converters.base import BadRow

ROLE_KEYS = (("role", "content"), ("from", "value"))
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


@dataclass
class Content:
    """A message's text and the number of ``{"type": "image"}`` parts it had (TRL's vision format)."""

    text: str
    image_parts: int = 0


@dataclass
class Turn:
    system: str | None
    user: Content
    assistant: Content | None


def message(value: Any, field: str) -> tuple[str, Content]:
    """(role, content) of one message in either key convention."""
    if not isinstance(value, dict):
        raise BadRow(field, f"a message must be an object, got {value!r}")
    for role_key, content_key in ROLE_KEYS:
        if role_key in value:
            role = ROLES.get(value[role_key])
            if role is None:
                raise BadRow(field, f"unknown role {value[role_key]!r}; allowed: {sorted(ROLES)}")
            return role, content(value.get(content_key), field)
    raise BadRow(field, "a message needs 'role'/'content' or 'from'/'value'")


def content(value: Any, field: str) -> Content:
    """A string, or a list of ``{"type": "text", "text": ...}`` / ``{"type": "image"}`` parts."""
    if isinstance(value, str):
        return Content(value.strip())
    if isinstance(value, list):
        texts, images = [], 0
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                images += 1
            elif kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"].strip())
            else:
                raise BadRow(
                    field,
                    f"content part must be {{'type': 'text', 'text': ...}} or {{'type': 'image'}}, got {part!r}",
                )
        return Content("\n".join(t for t in texts if t), images)
    raise BadRow(field, f"message content must be a string or a list of parts, got {value!r}")


def single_turn(messages: Any, field: str, answered: bool) -> Turn:
    """``[system], user[, assistant]`` (the assistant turn is required when ``answered``)."""
    if not isinstance(messages, list) or not messages:
        raise BadRow(field, f"must be a non-empty list of messages, got {messages!r}")
    turns = [message(m, field) for m in messages]
    system = None
    if turns[0][0] == "system":
        system = turns.pop(0)[1].text or None
    roles = [role for role, _ in turns]
    expected = ["user", "assistant"] if answered else ["user"]
    if roles != expected:
        raise BadRow(
            field, f"roles {roles} are not one exchange {expected} (multi-turn data has no canonical record)"
        )
    assistant = turns[1][1] if answered else None
    return Turn(system, turns[0][1], assistant)


def answer(value: Any, field: str) -> str:
    """The text of an answer given as a string, one assistant message, or a list of one."""
    if isinstance(value, str):
        text = value.strip()
    else:
        messages = value if isinstance(value, list) else [value]
        if len(messages) != 1:
            raise BadRow(field, f"must hold one assistant message, got {len(messages)}")
        role, body = message(messages[0], field)
        if role != "assistant":
            raise BadRow(field, f"must be an assistant message, got role {role!r}")
        text = body.text
    if not text:
        raise BadRow(field, "is empty")
    return text
