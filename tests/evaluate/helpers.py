"""Overrides shared by the evaluation tests."""

from __future__ import annotations

from pathlib import Path


def shapes_overrides(name: str, shapes_dir: Path, limit: int) -> list[str]:
    """Point the shapes benchmark ``name`` at the session's 40-scene world and keep ``limit`` items."""
    key = f"benchmarks.{name}"
    return [f"{key}.path={shapes_dir}", f"{key}.world.num_scenes=40", f"{key}.limit={limit}"]
