"""Text-only language models for judging: a plain causal LM (``AutoModelForCausalLM``) asked
through its tokenizer's chat template, batched and greedy; or a GGUF file, which transformers
dequantises on load (the ``gguf`` package). Safety judges and moderation models people run
locally are text-only; the video backend (``models.hf``) cannot load them.

``is_text_only(path)`` tells the two apart from the checkpoint's config: no vision tower (no
``vision_config``), or a ``.gguf`` file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from videosafety.models.hf import file_digest, resolve_torch_dtype, weights_digest


def is_text_only(model_id_or_path: str | os.PathLike, *, trust_remote_code: bool = False) -> bool:
    """True for a GGUF file or a checkpoint whose config has no vision tower."""
    if str(model_id_or_path).endswith(".gguf"):
        return True
    from transformers import AutoConfig  # heavy: only when a local judge is loaded

    config = AutoConfig.from_pretrained(str(model_id_or_path), trust_remote_code=trust_remote_code)
    return getattr(config, "vision_config", None) is None


class TextLLM:
    """A causal LM behind (system, user) prompts. ``name`` is ``hf:<id or path>``; ``revision``
    the weights digest of a local checkpoint (the GGUF file's for GGUF)."""

    def __init__(self, model_id_or_path: str | os.PathLike, *, device: str = "cpu", dtype: str = "auto",
                 batch_size: int = 8, trust_remote_code: bool = False) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_id = str(model_id_or_path)
        self.name = f"hf:{self.model_id}"
        self.batch_size = int(batch_size)
        path = Path(self.model_id)
        gguf = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        source = str(path.parent) if gguf else self.model_id
        torch_dtype = resolve_torch_dtype(dtype, "cpu" if device == "auto" and not torch.cuda.is_available()
                                           else device)
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **gguf)
        self.tokenizer.padding_side = "left"  # the next token of every row sits at the last position
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {} if gguf else {"use_safetensors": True}  # weights never from pickles; GGUF is no pickle
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype,
                                                          trust_remote_code=trust_remote_code, **gguf, **kwargs)
        if device not in ("auto", "cpu"):
            self.model.to(device)
        elif device == "auto" and torch.cuda.is_available():
            self.model.to("cuda")
        self.model.eval()
        self.device = self.model.device
        if gguf:  # the digest of the one file, not of the folder it sits in
            self.revision = _file_revision(path) if path.is_file() else None
        else:
            self.revision = weights_digest(path) if path.is_dir() else None

    def render(self, prompts: Sequence[tuple[str | None, str]]) -> list[str]:
        """Each (system, user) prompt through the chat template, ready for the assistant's turn."""
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.model_id}: the tokenizer has no chat template; a rubric or RJ judge needs one")
        out = []
        for system, user in prompts:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            out.append(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        return out

    def _encode(self, prompts: Sequence[tuple[str | None, str]]):
        # the template already holds any special tokens; adding them again would double a BOS
        return self._encode_texts(self.render(prompts), add_special_tokens=False)

    def _encode_texts(self, texts: Sequence[str], *, add_special_tokens: bool):
        return self.tokenizer(list(texts), return_tensors="pt", padding=True,
                              add_special_tokens=add_special_tokens).to(self.device)

    def generate_texts(self, prompts: Sequence[tuple[str | None, str]], max_new_tokens: int) -> list[str]:
        """Greedy answers, ``batch_size`` prompts per call."""
        return self._generate([self._encode(prompts[s:s + self.batch_size])
                               for s in range(0, len(prompts), self.batch_size)], max_new_tokens)

    def generate_raw(self, texts: Sequence[str], max_new_tokens: int, *, add_special_tokens: bool = True) -> list[str]:
        """Greedy continuations of prompts written in a model's own format (a moderation model's,
        not the chat template); the tokenizer adds its special tokens (a BOS) as it does by default,
        or none (``add_special_tokens=False``) for a format that writes its BOS itself."""
        return self._generate([self._encode_texts(texts[s:s + self.batch_size], add_special_tokens=add_special_tokens)
                               for s in range(0, len(texts), self.batch_size)], max_new_tokens)

    def _generate(self, batches, max_new_tokens: int) -> list[str]:
        import torch

        answers: list[str] = []
        for batch in batches:
            with torch.inference_mode():
                out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            answers += self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return answers

    def last_token_logits(self, prompts: Sequence[tuple[str | None, str]]):
        """(B, vocab) float32 logits of the next token after each rendered prompt."""
        import torch

        batch = self._encode(prompts)
        with torch.inference_mode():
            logits = self.model(**batch).logits
        return logits[:, -1, :].float().cpu()

    def last_token_logits_raw(self, texts: Sequence[str], token_ids: Sequence[int] | None = None):
        """(N, vocab) float32 logits of the next token after each prompt written in a model's own
        format (a scoring moderation model's), tokenized as ``generate_raw`` does (the tokenizer's
        special tokens, a BOS, added), ``batch_size`` prompts per forward; ``token_ids``: only those
        columns, (N, len(token_ids)), so that a large vocabulary is not copied out for two logits."""
        import torch

        rows = []
        for s in range(0, len(texts), self.batch_size):
            batch = self._encode_texts(texts[s:s + self.batch_size], add_special_tokens=True)
            with torch.inference_mode():  # the last position's logits only: (B, 1, vocab), not (B, L, vocab)
                logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
            if token_ids is not None:
                logits = logits[:, list(token_ids)]
            rows.append(logits.float().cpu())
        if not rows:
            return torch.empty(0, len(token_ids) if token_ids is not None else self.model.config.vocab_size)
        return torch.cat(rows)

    def __repr__(self) -> str:
        return f"TextLLM({self.model_id!r}, revision={self.revision!r})"


def _file_revision(path: Path) -> str:
    """A GGUF file's revision, digested as weights_digest digests each weight file."""
    import hashlib

    h = hashlib.sha256(f"{path.name}\0{path.stat().st_size}\0".encode())
    file_digest(path, h)
    return "sha256:" + h.hexdigest()[:16]


__all__ = ["TextLLM", "is_text_only"]
