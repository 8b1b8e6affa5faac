"""Behaviour of each negative sampler: the transforms in PIL and pixel mode, the draws of other images,
and the K negatives a sampler gives a record (seeded, independent, identical on every call)."""

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
    ListedSampler,
    MoCoV2Sampler,
    NegativeSampler,
    Pool,
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


def generator(sampler: NegativeSampler, epoch: int = 0) -> torch.Generator:
    return seeded_generator(seed=0, record_id="rec-1", epoch=epoch, name=sampler.name)


STOCHASTIC = {
    "crop-pixels": lambda: CropSampler(apply_to="pixels"),
    "crop-pil": lambda: CropSampler(apply_to="pil"),
    "diffusion-pixels": lambda: DiffusionNoiseSampler(apply_to="pixels"),
    "diffusion-pil": lambda: DiffusionNoiseSampler(apply_to="pil"),
    "rotate-pixels": lambda: RotateSampler(apply_to="pixels"),
    "rotate-pil": lambda: RotateSampler(apply_to="pil"),
    "mocov2-pil": lambda: MoCoV2Sampler(),
}


def corrupt(sampler: NegativeSampler, epoch: int, dtype: torch.dtype = torch.float32):
    if sampler.apply_to == "pixels":
        return sampler.corrupt_pixels(make_pixels(dtype), generator(sampler, epoch))
    return sampler.corrupt_image(make_image(), generator(sampler, epoch))


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


# --- K negatives per record ---------------------------------------------------------------------


@pytest.fixture
def gallery(tmp_path):
    """Three records, each with its own image file (different sizes on purpose)."""
    from mmpo.data.records import Record

    records = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        make_image(seed=i + 1, size=(20 + 4 * i, 30)).save(path)
        records.append(Record(f"r{i}", [str(path)], "p", "c", ["r"], negative_images=[]))
    return records


@pytest.mark.parametrize(
    "make", [lambda: CropSampler(apply_to="pil"), lambda: RotateSampler()], ids=["crop", "rotate"]
)
def test_k_pil_negatives_are_independent_draws_and_the_same_on_every_call(make, gallery):
    sampler, record = make(), gallery[0]
    images = [make_image()]
    first = sampler.negatives(record, images, 3, 0, 0, Pool())
    again = sampler.negatives(record, images, 3, 0, 0, Pool())
    arrays = [as_array(n.images[0]) for n in first]
    assert len(first) == 3 and all(
        np.array_equal(a, as_array(b.images[0])) for a, b in zip(arrays, again, strict=True)
    )
    assert not np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[1], arrays[2])
    # the first negative is the one a single-negative run draws (stream = the sampler's name)
    expected = sampler.corrupt_image(images[0], seeded_generator(0, record.id, 0, sampler.name))
    np.testing.assert_array_equal(arrays[0], as_array(expected))
    reference = sampler.negatives(record, images, 1, 0, 0, Pool(), reference=True)[0]
    assert not np.array_equal(arrays[0], as_array(reference.images[0]))  # resample_per_forward's own draw


def test_pixel_negatives_carry_a_transform_that_gives_the_same_pixels_every_time(gallery):
    sampler = DiffusionNoiseSampler()
    (negative,) = sampler.negatives(gallery[0], [make_image()], 1, 0, 0, Pool())
    assert negative.pixel_transform is not None and np.array_equal(
        as_array(negative.images[0]), as_array(make_image())
    )
    pixels = [make_pixels(), make_pixels() + 1]
    first, again = negative.pixel_transform(pixels), negative.pixel_transform(pixels)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    g = seeded_generator(0, "r0", 0, "diffusion")  # one generator across the record's images, in order
    assert all(torch.equal(a, sampler.corrupt_pixels(p, g)) for a, p in zip(first, pixels, strict=True))


def test_random_images_are_other_records_images_resized_and_distinct(gallery):
    record, pool = gallery[0], Pool([r.images[0] for r in gallery])
    image = make_image()
    negatives = RandomImageSampler().negatives(record, [image], 2, 0, 0, pool)
    others = {
        p: np.asarray(Image.open(p).convert("RGB").resize(image.size, Image.Resampling.BILINEAR))
        for p in pool.images[1:]
    }
    drawn = [
        next(p for p, a in others.items() if np.array_equal(np.asarray(n.images[0]), a)) for n in negatives
    ]
    assert sorted(drawn) == sorted(others)  # two negatives, two distinct other images, never the own
    assert all(n.images[0].size == image.size for n in negatives)
    by_epoch = [
        np.asarray(RandomImageSampler().negatives(record, [image], 1, 0, e, pool)[0].images[0])
        for e in range(8)
    ]
    assert any(not np.array_equal(by_epoch[0], other) for other in by_epoch[1:])  # re-drawn per epoch


def test_random_image_without_another_image_is_a_clear_error(gallery):
    with pytest.raises(ValueError, match="random_image needs other images"):
        RandomImageSampler().negatives(gallery[0], [make_image()], 1, 0, 0, Pool(gallery[0].images))


def test_listed_negatives_are_the_records_own_in_order_and_a_missing_one_is_named(gallery):
    record = gallery[0]
    record.negative_images = [gallery[2].images[0], gallery[1].images[0]]
    first, second = ListedSampler().negatives(record, [make_image()], 2, 0, 5, Pool())
    assert np.array_equal(
        np.asarray(first.images[0]), np.asarray(Image.open(gallery[2].images[0]).convert("RGB"))
    )
    assert np.array_equal(
        np.asarray(second.images[0]), np.asarray(Image.open(gallery[1].images[0]).convert("RGB"))
    )
    assert not ListedSampler.epoch_dependent
    with pytest.raises(ValueError, match="needs 3 negative image.*lists 2"):
        ListedSampler().negatives(record, [make_image()], 3, 0, 0, Pool())


# --- construction errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MoCoV2Sampler(apply_to="pixels"), r"apply_to='pixels'.*allowed: \['pil'\]"),
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
