"""Converters between the public multimodal preference sets and mmpo's canonical records (README,
"Converting data"): one module per source format, named in :mod:`.registry`, run by :mod:`.pipeline`."""

from mmpo.data.converters.pipeline import ConvertError, Report, convert, export, export_records
from mmpo.data.converters.registry import EXPORTS, FORMATS

__all__ = ["EXPORTS", "FORMATS", "ConvertError", "Report", "convert", "export", "export_records"]
