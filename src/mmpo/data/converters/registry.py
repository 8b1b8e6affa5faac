"""The allowed ``--format`` and ``--export`` values, each naming its converter module once."""

from __future__ import annotations

from types import ModuleType

from mmpo.data.converters import llamafactory, mcm_dpo, mdpo, povid, rlaif_v, swift, trl, vlfeedback

FORMATS: dict[str, ModuleType] = {
    "mdpo": mdpo,
    "vlfeedback": vlfeedback,
    "rlaif_v": rlaif_v,
    "povid": povid,
    "mcm_dpo": mcm_dpo,
    "trl": trl,
    "swift": swift,
    "llamafactory": llamafactory,
}
EXPORTS: dict[str, ModuleType] = {"trl": trl, "swift": swift}
