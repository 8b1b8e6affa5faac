"""seeded_generator: stable, input-sensitive seeding of the corruption randomness."""

import pytest
import torch

from mmpo.negatives import seeded_generator

BASE = {"seed": 0, "record_id": "rec-1", "epoch": 0, "name": "crop"}


def draws(**kwargs) -> torch.Tensor:
    return torch.rand(8, generator=seeded_generator(**kwargs))


def test_same_inputs_give_identical_draws():
    torch.testing.assert_close(draws(**BASE), draws(**BASE), rtol=0, atol=0)


@pytest.mark.parametrize(
    "change", [{"seed": 1}, {"record_id": "rec-2"}, {"epoch": 1}, {"name": "diffusion"}], ids=str
)
def test_any_changed_input_gives_different_draws(change):
    assert not torch.equal(draws(**BASE), draws(**{**BASE, **change}))


def test_fields_do_not_run_together():
    # naive string concatenation would map both to "1234x"
    assert not torch.equal(
        draws(seed=1, record_id="23", epoch=4, name="x"), draws(seed=12, record_id="3", epoch=4, name="x")
    )


def test_seed_is_pinned_across_processes_and_versions():
    # BLAKE2b of the key, not Python's salted hash(): this value must never change, or reference
    # caches keyed on the sampler seed silently stop matching their inputs.
    assert seeded_generator(**BASE).initial_seed() == 14649870361928768345


def test_integer_record_id_is_the_same_record():
    torch.testing.assert_close(draws(**{**BASE, "record_id": 7}), draws(**{**BASE, "record_id": "7"}))
