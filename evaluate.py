"""Evaluate: ``python evaluate.py run=<run dir> [benchmark=[shapes_pope,shapes_chair]]`` (see README)."""

from mmpo.evaluate import main

main()
