"""Optional LoRA (PEFT) on the language model only, injected in place so the model keeps its
own class and attribute paths (alarm placement, heads and the processor see no wrapper).

A stage's output is saved merged: the next stage, evaluation and standard engines load an
ordinary checkpoint. Within a run the adapters can be switched off, which gives the frozen
reference model of GRPO without a second copy of the weights."""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch.nn as nn

from videosafety.models.alarm import language_model_of
from videosafety.train.config import LoraSettings


# peft is imported where used: it pulls in transformers (seconds), and LoRA is optional.


def add_lora(model: nn.Module, settings: LoraSettings) -> list[nn.Parameter]:
    """Inject LoRA adapters into the language model's target modules; returns their parameters.
    Vision modules with the same names (some vision towers also have q_proj) are left alone."""
    from peft import LoraConfig, inject_adapter_in_model

    lm = language_model_of(model)
    prefix = next(name for name, m in model.named_modules() if m is lm)
    names = "|".join(re.escape(t) for t in settings.target_modules)
    pattern = rf"{re.escape(prefix)}\..*\.({names})"
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=pattern, bias="none")
    inject_adapter_in_model(config, model)
    params = lora_parameters(model)
    if not params:
        raise ValueError(f"no LoRA target among {settings.target_modules} inside {prefix}")
    return params


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if "lora_" in n]


def _lora_layers(model: nn.Module):
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weights and put the plain layers back; returns the
    number of layers merged."""
    layers = _lora_layers(model)
    for name, layer in layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.get_base_layer())
    return len(layers)


@contextmanager
def adapters_disabled(model: nn.Module):
    """The base model's behaviour while inside (GRPO's reference under LoRA)."""
    layers = [m for _, m in _lora_layers(model)]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m in layers:
            m.enable_adapters(True)
