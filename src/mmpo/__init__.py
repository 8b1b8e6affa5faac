"""mmpo: multimodal preference optimization as Hydra-composable parts of one Lightning trainer."""

__version__ = "0.1.0"
