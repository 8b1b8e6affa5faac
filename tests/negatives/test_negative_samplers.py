"""Behaviour of each corrupted-image sampler in PIL and pixel mode."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmpo.negatives import (
    BlankSampler,
    CropSampler,
    DiffusionNoiseSampler,
    MoCoV2Sampler,
    NegativeSampler,
    RandomImageSampler,
    RotateSampler,
    noise_schedule,
    sample_crop_box,
    seeded_generator,
)

HEIGHT, WIDTH = 32, 40


def make_image(seed: int = 0, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_pixels(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0)).to(dtype)


def other_image(generator: torch.Generator) -> Image.Image:
    """Another record's image, drawn with the generator (different size on purpose)."""
    pixels = torch.randint(0, 256, (20, 30, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def generator(sampler: NegativeSampler, epoch: int = 0) -> torch.Generator:
    return seeded_generator(seed=0, record_id="rec-1", epoch=epoch, name=sampler.name)


STOCHASTIC = {
    "crop-pixels": lambda: CropSampler(apply_to="pixels"),
    "crop-pil": lambda: CropSampler(apply_to="pil"),
    "diffusion-pixels": lambda: DiffusionNoiseSampler(apply_to="pixels"),
    "diffusion-pil": lambda: DiffusionNoiseSampler(apply_to="pil"),
    "rotate-pixels": lambda: RotateSampler(apply_to="pixels"),
    "rotate-pil": lambda: RotateSampler(apply_to="pil"),
    "random_image-pil": lambda: RandomImageSampler(),
    "mocov2-pil": lambda: MoCoV2Sampler(),
}


def corrupt(sampler: NegativeSampler, epoch: int, dtype: torch.dtype = torch.float32):
    if sampler.apply_to == "pixels":
        return sampler.corrupt_pixels(make_pixels(dtype), generator(sampler, epoch))
    return sampler.corrupt_image(make_image(), generator(sampler, epoch), other_image)


def as_array(output) -> np.ndarray:
    if isinstance(output, torch.Tensor):
        return output.float().numpy()
    return np.asarray(output, dtype=np.float32)


# --- properties shared by all random samplers ---------------------------------------------------


@pytest.mark.parametrize("make", STOCHASTIC.values(), ids=STOCHASTIC.keys())
def test_same_generator_seed_gives_same_output(make):
    sampler = make()
    np.testing.assert_array_equal(as_array(corrupt(sampler, 0)), as_array(corrupt(sampler, 0)))


@pytest.mark.parametrize("make", STOCHASTIC.values(), ids=STOCHASTIC.keys())
def test_different_epochs_give_different_outputs(make):
    sampler = make()
    assert not np.array_equal(as_array(corrupt(sampler, 0)), as_array(corrupt(sampler, 1)))


@pytest.mark.parametrize("make", STOCHASTIC.values(), ids=STOCHASTIC.keys())
def test_output_keeps_size_and_differs_from_input(make):
    sampler = make()
    output = corrupt(sampler, 0)
    if sampler.apply_to == "pixels":
        assert output.shape == (3, HEIGHT, WIDTH) and output.dtype == torch.float32
        original = as_array(make_pixels())
    else:
        assert output.size == (WIDTH, HEIGHT) and output.mode == "RGB"
        original = as_array(make_image())
    assert not np.allclose(as_array(output), original, atol=1e-3)


@pytest.mark.parametrize(
    "make", [CropSampler, DiffusionNoiseSampler, lambda: RotateSampler(apply_to="pixels")]
)
def test_pixel_mode_keeps_low_precision_dtype(make):
    sampler = make()
    output = corrupt(sampler, 0, dtype=torch.bfloat16)
    assert output.dtype == torch.bfloat16 and output.shape == (3, HEIGHT, WIDTH)


def test_pixel_mode_rejects_a_batched_tensor():
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        CropSampler().corrupt_pixels(make_pixels()[None], torch.Generator())


def test_call_dispatches_on_input_type():
    sampler = DiffusionNoiseSampler()
    assert isinstance(sampler(make_pixels(), generator(sampler)), torch.Tensor)
    assert isinstance(sampler(make_image(), generator(sampler)), Image.Image)


# --- crop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, scale", [(384, 384, (0.01, 0.2)), (100, 300, (0.2, 0.5)), (37, 23, (0.05, 0.9))]
)
def test_crop_box_area_within_scale_and_inside_image(height, width, scale):
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = sample_crop_box(height, width, scale, (3 / 4, 4 / 3), gen)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0
        # rounding h and w to whole pixels moves the area by at most (h + w + 1) / 2 + 1/4 pixels
        slack = (0.5 * (h + w + 1) + 0.25) / (height * width)
        assert scale[0] - slack <= h * w / (height * width) <= scale[1] + slack


def test_crop_box_area_fraction_is_uniform_in_scale():
    # on a square image every 1-20% window fits, so no draw is rejected: mean = midpoint 0.105
    # (standard error 0.0025 for 500 draws), quartiles near 0.0575 and 0.1525
    gen = torch.Generator().manual_seed(0)
    boxes = [sample_crop_box(384, 384, (0.01, 0.2), (3 / 4, 4 / 3), gen) for _ in range(500)]
    fractions = np.array([h * w / 384**2 for _, _, h, w in boxes])
    assert abs(fractions.mean() - 0.105) < 0.01
    np.testing.assert_allclose(np.quantile(fractions, [0.25, 0.75]), [0.0575, 0.1525], atol=0.015)


def test_crop_box_falls_back_to_central_crop_within_ratio():
    # a 10x100 strip cannot hold a full-area window of aspect ratio <= 4/3: central 10x13 window
    box = sample_crop_box(10, 100, (1.0, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert box == (0, 43, 10, 13)


def test_full_scale_crop_returns_the_same_image():
    pixels = torch.zeros(3, HEIGHT, HEIGHT)
    pixels[:, :, HEIGHT // 2 :] = 1.0  # left half 0, right half 1
    sampler = CropSampler(scale=(1.0, 1.0))
    for epoch in range(5):
        torch.testing.assert_close(sampler.corrupt_pixels(pixels, generator(sampler, epoch)), pixels)


def test_crop_pixels_is_the_sampled_window_resized_bilinearly():
    sampler = CropSampler()
    pixels = make_pixels()
    top, left, h, w = sample_crop_box(HEIGHT, WIDTH, sampler.scale, sampler.ratio, generator(sampler))
    window = pixels[None, :, top : top + h, left : left + w]
    expected = F.interpolate(window, size=(HEIGHT, WIDTH), mode="bilinear", antialias=True)[0]
    torch.testing.assert_close(sampler.corrupt_pixels(pixels, generator(sampler)), expected)


# --- diffusion ----------------------------------------------------------------------------------


def test_sigmoid_schedule_matches_mcm_dpo_value():
    alpha_bar = noise_schedule(1000, 1e-5, 0.5e-2, "sigmoid")
    assert alpha_bar[700].item() == pytest.approx(0.3513, abs=1e-3)
    assert DiffusionNoiseSampler(step=700).alpha_bar == pytest.approx(0.3513, abs=1e-3)
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all())  # noise only grows with t


def test_diffusion_pixels_follow_the_forward_process_formula():
    sampler = DiffusionNoiseSampler(step=700)
    pixels = make_pixels()
    eps = torch.randn(pixels.shape, generator=generator(sampler))
    expected = math.sqrt(0.3512665) * pixels + math.sqrt(1 - 0.3512665) * eps
    torch.testing.assert_close(sampler.corrupt_pixels(pixels, generator(sampler)), expected)


def test_diffusion_pil_noises_in_minus_one_to_one_range():
    sampler = DiffusionNoiseSampler(step=700)
    image = make_image()
    x0 = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) * 2 - 1
    eps = torch.randn(x0.shape, generator=generator(sampler))
    noisy = ((sampler.alpha_bar**0.5 * x0 + (1 - sampler.alpha_bar) ** 0.5 * eps + 1) / 2).clamp(0, 1)
    expected = (noisy * 255).round().permute(1, 2, 0).numpy()
    np.testing.assert_allclose(as_array(sampler.corrupt_image(image, generator(sampler))), expected, atol=1)


# --- blank, rotate, random image ----------------------------------------------------------------


def test_blank_pixels_are_all_zeros():
    output = BlankSampler().corrupt_pixels(make_pixels(torch.bfloat16), torch.Generator())
    assert output.dtype == torch.bfloat16 and output.shape == (3, HEIGHT, WIDTH)
    assert not output.any()


def test_blank_image_has_the_given_colour_and_size():
    output = BlankSampler(value=(10, 20, 30), apply_to="pil").corrupt_image(make_image(), torch.Generator())
    assert output.size == (WIDTH, HEIGHT) and output.mode == "RGB"
    assert (np.asarray(output) == [10, 20, 30]).all()


@pytest.mark.parametrize("apply_to", ["pil", "pixels"])
def test_rotation_by_zero_degrees_is_identity(apply_to):
    sampler = RotateSampler(degrees=(0, 0), apply_to=apply_to)
    if apply_to == "pixels":
        pixels = make_pixels()
        torch.testing.assert_close(sampler.corrupt_pixels(pixels, generator(sampler)), pixels)
    else:
        image = make_image()
        np.testing.assert_array_equal(np.asarray(sampler.corrupt_image(image, generator(sampler))), image)


def test_rotation_of_pixels_matches_pil_rotation():
    # counter-clockwise about the centre, aspect ratio respected on a non-square image
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[5:20, 40:60] = 255
    image[30:44, 4:20, 0] = 120
    pil = RotateSampler(degrees=(30, 30), apply_to="pil").corrupt_image(
        Image.fromarray(image), torch.Generator()
    )
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    rotated = RotateSampler(degrees=(30, 30), apply_to="pixels").corrupt_pixels(pixels, torch.Generator())
    mismatch = (rotated.permute(1, 2, 0).numpy() != np.asarray(pil)).any(-1).mean()
    assert mismatch < 0.01
    assert (np.asarray(pil) != image).any(-1).mean() > 0.1


def test_random_image_is_the_other_image_resized():
    output = RandomImageSampler().corrupt_image(make_image(), generator(RandomImageSampler()), other_image)
    expected = other_image(generator(RandomImageSampler())).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(np.asarray(output), np.asarray(expected))


def test_random_image_without_other_image_raises():
    with pytest.raises(ValueError, match="other_image"):
        RandomImageSampler().corrupt_image(make_image(), torch.Generator())


# --- construction errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RandomImageSampler(apply_to="pixels"), r"apply_to='pixels'.*allowed: \['pil'\]"),
        (lambda: CropSampler(apply_to="tensor"), r"apply_to='tensor'.*allowed"),
        (lambda: CropSampler(scale=(0.5, 0.2)), "scale"),
        (lambda: CropSampler(scale=(0.0, 0.2)), "scale"),
        (lambda: CropSampler(scale=(0.1, 1.5)), "scale"),
        (lambda: CropSampler(scale=0.2), "scale"),
        (lambda: CropSampler(ratio=(0.0, 1.0)), "ratio"),
        (lambda: DiffusionNoiseSampler(step=1000), "step"),
        (lambda: DiffusionNoiseSampler(schedule="cosine"), r"schedule.*allowed"),
        (lambda: DiffusionNoiseSampler(beta_start=0.1, beta_end=0.01), "beta_start"),
        (lambda: BlankSampler(value=(255, 0, 0)), "value"),
        (lambda: BlankSampler(value=(0, 0, 256), apply_to="pil"), "value"),
        (lambda: RotateSampler(degrees=(80, 10)), "degrees"),
    ],
)
def test_bad_construction_raises_naming_the_key(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- MoCo v2 ------------------------------------------------------------------------------------

ONLY = dict(crop_scale=(1.0, 1.0), p_jitter=0.0, p_grayscale=0.0, p_blur=0.0, p_flip=0.0)


def mocov2(**steps) -> MoCoV2Sampler:
    """A MoCo v2 sampler with every step off (full-area crop) except those given."""
    return MoCoV2Sampler(**{**ONLY, **steps})


def test_mocov2_with_every_step_off_is_the_identity():
    image = make_image(size=(WIDTH, WIDTH))  # square: the full-area crop fits with ratio 1
    np.testing.assert_array_equal(as_array(mocov2().corrupt_image(image, torch.Generator())), as_array(image))


def test_mocov2_flip_and_grayscale_steps():
    image = make_image(size=(WIDTH, WIDTH))
    flipped = as_array(mocov2(p_flip=1.0).corrupt_image(image, torch.Generator()))
    np.testing.assert_array_equal(flipped, as_array(image)[:, ::-1])
    gray = as_array(mocov2(p_grayscale=1.0).corrupt_image(image, torch.Generator()))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_mocov2_brightness_scales_every_channel_by_one_factor_in_range():
    image = Image.new("RGB", (WIDTH, WIDTH), (100, 50, 200))
    sampler = mocov2(p_jitter=1.0, jitter=(0.4, 0.0, 0.0, 0.0))
    for epoch in range(5):
        out = as_array(sampler.corrupt_image(image, generator(sampler, epoch)))[0, 0]
        factor = out[1] / 50  # 50 * 1.4 stays below 255, so this channel is never clipped
        assert 0.6 - 0.01 <= factor <= 1.4 + 0.01
        np.testing.assert_allclose(out, np.minimum(np.array([100, 50, 200]) * factor, 255), atol=4.5)


def test_mocov2_hue_shift_of_a_third_turns_red_into_green():
    from mmpo.negatives.mocov2 import shift_hue

    red = Image.new("RGB", (4, 4), (255, 0, 0))
    np.testing.assert_allclose(as_array(shift_hue(red, 1 / 3))[0, 0], [0, 255, 0], atol=3)


def test_mocov2_rejects_pixels_and_bad_probabilities():
    with pytest.raises(ValueError, match="PIL images only"):
        MoCoV2Sampler().corrupt_pixels(make_pixels(), torch.Generator())
    with pytest.raises(ValueError, match="p_blur"):
        MoCoV2Sampler(p_blur=1.5)
