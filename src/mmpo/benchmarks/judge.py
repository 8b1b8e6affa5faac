"""Text judges for benchmarks graded by a language model (MMHal-Bench): ``judge(prompt) -> reply``.

Two backends behind one call signature, both deterministic (temperature 0 / greedy) and both able to
say what they are (:meth:`describe`, stored with the results, so that scores of two judges are never
mistaken for comparable):

- :class:`OpenAIJudge` -- any server that speaks the OpenAI-compatible ``POST /v1/chat/completions``
  API (vLLM, llama.cpp server, TGI, or the hosted API). Bounded retries on connection errors,
  HTTP 429 and 5xx; other HTTP errors fail at once with the server's message. Its version is the
  ``model`` field of the server's replies (``served_model``, e.g. a dated snapshot behind an alias).
- :class:`HFJudge` -- a local Hugging Face causal LM directory, loaded on the first call
  (``local_files_only``: nothing is downloaded); the chat template is applied when the tokenizer has one.
  Its version is the SHA-256 of its weight and config files (``files``), hashed once.
"""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import requests


class Judge(Protocol):
    def __call__(self, prompt: str) -> str: ...

    def describe(self) -> dict[str, Any]: ...


class JudgeError(RuntimeError):
    """The judge could not produce a reply."""


class OpenAIJudge:
    """Client of an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: API root including the version, e.g. ``http://127.0.0.1:8000/v1``; the request goes
            to ``<base_url>/chat/completions``.
        model: model name sent in the request (and recorded with the results).
        api_key_env: name of the environment variable holding the API key; if it is unset no
            ``Authorization`` header is sent (local servers usually need none). The key is never logged.
        timeout: seconds per HTTP request.
        temperature, max_tokens: sampling settings of the request.
        max_retries: extra attempts after a connection error, HTTP 429 or 5xx.
        retry_backoff: seconds to wait before retry ``k`` is ``retry_backoff * k``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        max_retries: int = 2,
        retry_backoff: float = 2.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.served_model: str | None = None

    def describe(self) -> dict[str, Any]:
        """Backend, URL, requested model, temperature and ``served_model`` (``None`` before a reply)."""
        return {
            "backend": "openai",
            "url": self.url,
            "model": self.model,
            "served_model": self.served_model,
            "temperature": self.temperature,
        }

    def __call__(self, prompt: str) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_backoff * attempt)
            try:
                response = requests.post(self.url, json=payload, headers=headers, timeout=self.timeout)
            except requests.RequestException as error:
                problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                continue
            if response.status_code != 200:
                raise JudgeError(
                    f"judge {self.url} answered HTTP {response.status_code}: {response.text[:300]}"
                )
            try:
                body = response.json()
                content = body["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise JudgeError(
                    f"judge {self.url} sent an unexpected body: {response.text[:300]}"
                ) from error
            if not isinstance(content, str):
                raise JudgeError(f"judge {self.url} sent no text content: {response.text[:300]}")
            self.served_model = body.get("model", self.served_model)
            return content
        raise JudgeError(
            f"judge {self.url} failed after {self.max_retries + 1} attempts; last error: {problem}"
        )


class HFJudge:
    """A local causal LM as judge, loaded lazily on the first call; greedy decoding.

    Args:
        model_path: local directory with the model and tokenizer (``save_pretrained`` layout).
        max_new_tokens: length of the reply.
        device: torch device string.
        dtype: ``"auto"`` or a torch dtype name such as ``"bfloat16"``.
    """

    def __init__(
        self, model_path: str, max_new_tokens: int = 512, device: str = "cpu", dtype: str = "auto"
    ) -> None:
        self.model_path = model_path
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.dtype = dtype

    def describe(self) -> dict[str, Any]:
        """Backend, model directory, decoding and the SHA-256 of the directory's weight and config files."""
        return {
            "backend": "hf",
            "model": self.model_path,
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "files": self._file_digests,
        }

    @cached_property
    def _file_digests(self) -> dict[str, str]:
        from mmpo.checkpoint import file_digests

        directory = Path(self.model_path)
        return file_digests(directory) if directory.is_dir() else {}

    @cached_property
    def _model_and_tokenizer(self) -> tuple[Any, Any]:
        if not Path(self.model_path).is_dir():
            raise FileNotFoundError(
                f"HFJudge: model_path {self.model_path!r} is not a local directory; put a Hugging Face causal LM "
                "there (config.json, weights, tokenizer files) or point the judge's model_path at one."
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True, dtype=dtype)
        return model.to(self.device).eval(), tokenizer

    def __call__(self, prompt: str) -> str:
        import torch

        model, tokenizer = self._model_and_tokenizer
        if tokenizer.chat_template:
            input_ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )["input_ids"]
        else:
            input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        input_ids = input_ids.to(self.device)
        with torch.inference_mode():
            generated = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id,
            )
        return tokenizer.decode(generated[0, input_ids.shape[1] :], skip_special_tokens=True)
