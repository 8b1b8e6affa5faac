"""Train: ``python train.py [group=option ...]`` (see README)."""

from mmpo.train import main

main()
