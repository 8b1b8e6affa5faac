"""LightningModules named by ``conf/module/<kind>.yaml``: the module kinds (:mod:`mmpo.modules.base`)."""

from mmpo.modules.base import TrainingDiverged, TrainingModule
from mmpo.modules.embedding import EmbeddingModule
from mmpo.modules.preference import PreferenceModule

__all__ = ["EmbeddingModule", "PreferenceModule", "TrainingDiverged", "TrainingModule"]
