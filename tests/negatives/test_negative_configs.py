"""conf/negative_sampler/*.yaml build the right samplers through build_negative_sampler."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmpo.negatives import (
    BlankSampler,
    ClipKnnSampler,
    CropSampler,
    DiffusionNoiseSampler,
    ListedSampler,
    MoCoV2Sampler,
    RandomImageSampler,
    RotateSampler,
    SaeSampler,
    build_negative_sampler,
    sampler_options,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "negative_sampler"

EXPECTED = {
    "crop": CropSampler,
    "crop_20_50": CropSampler,
    "diffusion": DiffusionNoiseSampler,
    "diffusion_700": DiffusionNoiseSampler,
    "random_image": RandomImageSampler,
    "blank": BlankSampler,
    "rotate": RotateSampler,
    "mocov2": MoCoV2Sampler,
    "listed": ListedSampler,
    "sae": SaeSampler,
    "clip_knn": ClipKnnSampler,
    "none": type(None),
}


def load(name: str):
    return OmegaConf.load(CONF / f"{name}.yaml")


def test_every_yaml_is_covered_and_named_in_the_error_messages():
    assert {path.stem for path in CONF.glob("*.yaml")} == set(EXPECTED) == {*sampler_options(), "none"}


@pytest.mark.parametrize("name, cls", EXPECTED.items())
def test_yaml_builds_its_sampler(name, cls, compose):
    """Each option as a run composes it (an option may extend another through its defaults list)."""
    composed = compose([f"negative_sampler={name}"]).get("negative_sampler")
    assert type(build_negative_sampler(composed)) is cls


def test_crop_yamls_carry_the_paper_scales_as_tuples():
    crop, crop_20_50 = build_negative_sampler(load("crop")), build_negative_sampler(load("crop_20_50"))
    assert crop.scale == (0.01, 0.2) and crop.ratio == (3 / 4, 4 / 3) and crop.apply_to == "pixels"
    assert crop_20_50.scale == (0.2, 0.5) and isinstance(crop_20_50.scale, tuple)
    assert not crop.resample_per_forward


def test_diffusion_step_700_by_override():
    sampler = build_negative_sampler(OmegaConf.merge(load("diffusion"), {"step": 700}))
    assert sampler.step == 700 and sampler.alpha_bar == pytest.approx(0.3513, abs=1e-3)


def test_official_mdpo_crop_per_forward_by_override():
    assert build_negative_sampler(
        OmegaConf.merge(load("crop"), {"resample_per_forward": True})
    ).resample_per_forward


def test_none_and_empty_configs_mean_no_sampler():
    assert build_negative_sampler(None) is None
    assert build_negative_sampler(OmegaConf.create({})) is None


def test_config_without_target_raises():
    with pytest.raises(ValueError, match="_target_"):
        build_negative_sampler(OmegaConf.create({"scale": [0.01, 0.2]}))


def test_target_that_is_not_a_sampler_raises():
    with pytest.raises(ValueError, match="NegativeSampler"):
        build_negative_sampler(OmegaConf.create({"_target_": "builtins.dict"}))


def test_bad_value_in_yaml_fails_at_build_time():
    with pytest.raises(ValueError, match="scale"):
        build_negative_sampler(OmegaConf.merge(load("crop"), {"scale": [0.5, 0.2]}))


def test_sae_yaml_has_the_paper_selection_and_names_its_allowed_values():
    sampler = build_negative_sampler(load("sae"))
    assert (sampler.select, sampler.diversity_weight, sampler.epoch_dependent) == ("greedy", 1.0, False)
    assert build_negative_sampler(OmegaConf.merge(load("sae"), {"select": "importance"})).epoch_dependent
    with pytest.raises(
        ValueError, match=r"negative_sampler.select='top'; allowed: \['greedy', 'importance'\]"
    ):
        build_negative_sampler(OmegaConf.merge(load("sae"), {"select": "top"}))


def test_an_unknown_option_of_a_sampler_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="apply_to"):
        build_negative_sampler(OmegaConf.merge(load("random_image"), {"apply_to": "pixels"}))
