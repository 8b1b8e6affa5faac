"""The alignment scorer: softmax over the yes/no logits of the model's own full forward, batch-independent,
and read back from the disk cache instead of recomputed."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmpo.embedding.score_cache import ScoreCache
from mmpo.embedding.scorer import AlignmentScorer
from tests.embedding.helpers import dynamic_resolution
from tests.engine.conftest import BUILDERS

TEXTS = ["a red circle at the top left and a blue square at the bottom right.", "a square", "an orange"]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i, colour in enumerate([(220, 30, 30), (30, 60, 220), (30, 170, 50)]):
        paths.append(str(root / f"{i}.png"))
        Image.new("RGB", (56, 56), colour).save(paths[-1])
    return paths


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_score_is_softmax_of_yes_no_logits_of_the_full_forward(family, image_files):
    model, processor = BUILDERS[family]()
    scorer = AlignmentScorer(model, processor, batch_size=2)
    tokenizer = processor.tokenizer
    separator = scorer.family.response_separator
    yes, no = (tokenizer.convert_tokens_to_ids(tokenizer.tokenize(separator + w)) for w in ("Yes", "No"))
    expected = []
    for path, text in zip(image_files, TEXTS, strict=True):
        prompt = scorer.family.chat_prompt(processor, scorer.prompt.format(text=text), 1)
        inputs = processor(text=[prompt], images=[Image.open(path).convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        pair = torch.stack([logits[yes[0]], logits[no[0]]])
        expected.append(float(torch.exp(pair[0]) / torch.exp(pair).sum()))
    got = scorer.alignment(image_files, TEXTS)  # batches of 2, left-padded: rows of different lengths
    assert got == pytest.approx(expected, abs=1e-5)
    assert not any(p.requires_grad for p in model.parameters())


def test_left_padding_of_images_with_different_token_counts_changes_nothing():
    model, processor = BUILDERS["qwen2_vl"]()
    scorer = AlignmentScorer(model, dynamic_resolution(processor), batch_size=2)
    small, big = Image.new("RGB", (28, 28), (220, 30, 30)), Image.new("RGB", (56, 56), (30, 60, 220))
    together = scorer.alignment([small, big], ["a red circle", "a"])
    assert together[0] == pytest.approx(float(scorer.alignment([small], ["a red circle"])[0]), abs=1e-5)
    assert together[1] == pytest.approx(float(scorer.alignment([big], ["a"])[0]), abs=1e-5)


def test_cache_hits_on_the_second_call_and_across_scorers(tmp_path, image_files):
    model, processor = BUILDERS["llava"]()
    cache_file = tmp_path / "scores.sqlite"
    scorer = AlignmentScorer(model, processor, batch_size=2, cache=cache_file)
    pairs = (image_files + image_files[:1], TEXTS + TEXTS[:1])  # the last pair repeats the first
    first = scorer(*pairs)
    assert (scorer.hits, scorer.misses) == (0, 4)
    assert len(ScoreCache(cache_file)) == 3
    assert torch.allclose(first[:3], scorer.alignment(image_files, TEXTS))
    assert first[3] == first[0]
    second = scorer(*pairs)
    assert (scorer.hits, scorer.misses) == (4, 4)
    assert torch.equal(first, second)
    # a new scorer over the same model and cache file reads from disk ...
    again = AlignmentScorer(model, processor, cache=cache_file)
    again(*pairs)
    assert (again.hits, again.misses) == (4, 0)
    # ... and another prompt is another fingerprint
    other = AlignmentScorer(model, processor, prompt="Is '{text}' true of the image?", cache=cache_file)
    other(image_files, TEXTS)
    assert (other.hits, other.misses) == (0, 3)


def test_answer_words_must_be_single_tokens():
    model, processor = BUILDERS["llava"]()
    with pytest.raises(
        ValueError, match=r"answer ' definitely' is \d+ tokens .* tokenizer 'TokenizersBackend'"
    ):
        AlignmentScorer(model, processor, yes="definitely")


def test_pil_images_need_keys_for_the_cache(tmp_path):
    model, processor = BUILDERS["llava"]()
    scorer = AlignmentScorer(model, processor, cache=tmp_path / "s.sqlite")
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match="image_keys"):
        scorer([image], ["a"])
    scorer([image], ["a"], image_keys=["img-0"])
    assert scorer.misses == 1
