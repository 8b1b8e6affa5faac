"""Judge clients: the OpenAI-compatible client against a stub server on 127.0.0.1, and the local HF judge."""

import hashlib

import pytest

from mmpo.benchmarks.judge import HFJudge, JudgeError, OpenAIJudge

from .chat_stub import stub_server


def test_openai_judge_posts_chat_completion_and_returns_content(monkeypatch):
    monkeypatch.setenv("MMPO_TEST_JUDGE_KEY", "secret-token")
    with stub_server([(200, "Fine answer.\nRating: 4")]) as stub:
        judge = OpenAIJudge(
            stub.base_url + "/", model="judge-7b", api_key_env="MMPO_TEST_JUDGE_KEY", timeout=5
        )
        assert judge("Grade this.") == "Fine answer.\nRating: 4"
    (request,) = stub.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-token"
    assert request["body"]["model"] == "judge-7b"
    assert request["body"]["messages"] == [{"role": "user", "content": "Grade this."}]
    assert request["body"]["temperature"] == 0.0
    assert judge.describe() == {
        "backend": "openai",
        "url": stub.base_url + "/chat/completions",
        "model": "judge-7b",
        "served_model": None,  # the stub's replies name no model
        "temperature": 0.0,
    }


def test_openai_judge_records_the_model_the_server_says_it_ran():
    with stub_server([(200, "Rating: 3"), (200, "Rating: 5")], model="judge-7b-2024-06-01") as stub:
        judge = OpenAIJudge(stub.base_url, model="judge-7b", timeout=5)
        assert judge.describe()["served_model"] is None  # nothing answered yet
        judge("x")
        judge("y")
    assert judge.describe()["served_model"] == "judge-7b-2024-06-01"


def test_openai_judge_sends_no_key_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("MMPO_TEST_JUDGE_KEY", raising=False)
    with stub_server([(200, "Rating: 2")]) as stub:
        OpenAIJudge(stub.base_url, model="m", api_key_env="MMPO_TEST_JUDGE_KEY", timeout=5)("x")
    assert "Authorization" not in stub.requests[0]["headers"]


def test_openai_judge_retries_server_errors_then_succeeds():
    with stub_server([(503, "busy"), (429, "slow down"), (200, "Rating: 6")]) as stub:
        judge = OpenAIJudge(stub.base_url, model="m", timeout=5, max_retries=2, retry_backoff=0.0)
        assert judge("x") == "Rating: 6"
    assert len(stub.requests) == 3


def test_openai_judge_gives_up_after_bounded_retries():
    with stub_server([(500, "down")] * 5) as stub:
        judge = OpenAIJudge(stub.base_url, model="m", timeout=5, max_retries=1, retry_backoff=0.0)
        with pytest.raises(JudgeError, match="after 2 attempts.*HTTP 500"):
            judge("x")
    assert len(stub.requests) == 2


def test_openai_judge_fails_at_once_on_client_errors():
    with stub_server([(400, "bad model name"), (200, "never sent")]) as stub:
        with pytest.raises(JudgeError, match="HTTP 400.*bad model name"):
            OpenAIJudge(stub.base_url, model="m", timeout=5, retry_backoff=0.0)("x")
    assert len(stub.requests) == 1


def test_openai_judge_reports_connection_failure():
    with stub_server([]) as stub:
        url = stub.base_url
    # the server is closed now: nothing listens on that port any more
    with pytest.raises(JudgeError, match="failed after 1 attempts"):
        OpenAIJudge(url, model="m", timeout=2, max_retries=0)("x")


def test_hf_judge_loads_lazily_and_returns_only_new_tokens(tmp_path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["ok", "<unk>", "<pad>", "</s>", "rating", ":", "5", "grade", "this"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    tokenizer.save_pretrained(tmp_path)
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=2, eos_token_id=3, bos_token_id=3,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # all logits equal -> greedy picks token 0, "ok"
    model.save_pretrained(tmp_path)

    judge = HFJudge(str(tmp_path), max_new_tokens=3)
    assert "_model_and_tokenizer" not in judge.__dict__  # nothing loaded yet
    assert judge("grade this") == "ok ok ok"  # the prompt is not echoed
    description = judge.describe()
    assert description["backend"] == "hf" and description["model"] == str(tmp_path)
    # its version: the SHA-256 of the weight and config files, tokenizer.json and config.json among them
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert description["files"][name] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_hf_judge_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_path"):
        HFJudge(str(tmp_path / "absent"))("x")


def test_openai_judge_rejects_a_reply_without_text():
    with stub_server([(200, None)]) as stub:
        with pytest.raises(JudgeError, match="no text content"):
            OpenAIJudge(stub.base_url, model="m", timeout=5)("x")
