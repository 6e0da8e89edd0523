"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything
imports huggingface_hub, and models are tiny random checkpoints built locally (see
videosafety.models.tiny). Heavy imports (torch, transformers) happen inside fixtures only."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TINY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "video_llama_3")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """One byte-level BPE shared by every tiny family (trained in milliseconds)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from videosafety.models.tiny import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer) -> dict:
    """family -> directory of a tiny random checkpoint, built once per session (lazily)."""
    from videosafety.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")

    class _Dirs(dict):
        def __missing__(self, family):
            path = build_tiny_model(family, root / family, tokenizer=tiny_tokenizer, seed=0)
            self[family] = path
            return path

    return _Dirs()


@pytest.fixture(params=TINY_FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny_dir(tiny_model_dirs, family):
    return tiny_model_dirs[family]


@pytest.fixture(scope="session")
def _tiny_llm_cache(tiny_model_dirs):
    from videosafety.models.hf import HFVideoLLM

    cache: dict = {}

    def get(family: str, batch_size: int = 4):
        key = (family, batch_size)
        if key not in cache:
            cache[key] = HFVideoLLM(tiny_model_dirs[family], device="cpu", dtype="float32", batch_size=batch_size)
        return cache[key]

    return get


@pytest.fixture
def tiny_llm(_tiny_llm_cache, family):
    """A loaded HFVideoLLM (float32, CPU) on the family's tiny checkpoint; shared, don't mutate."""
    return _tiny_llm_cache(family)


@pytest.fixture
def no_network(monkeypatch):
    """Make any socket connection attempt fail loudly."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
