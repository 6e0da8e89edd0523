"""Model specs, as the command line names models:

- `hf:PATH_OR_ID`: a transformers video LLM (alarm-token checkpoints included);
- `openai:MODEL@BASE_URL`: any OpenAI-compatible chat-completions server;
  `openai:MODEL@URL1,URL2,...`: replicas of one model, used in turn (OpenAIVideoLLM);
- `ref:refuse-all`, `ref:comply-all`: reference policies;
- `demo` (or no spec): the embedded demonstration model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from videosafety.budget import FrameBudget
from videosafety.models.base import VideoLLM


@dataclass(frozen=True)
class ModelOptions:
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    trust_remote_code: bool = False
    openai: dict = field(default_factory=dict)  # OpenAIVideoLLM keyword options


def parse_spec(spec: str | None) -> tuple[str, str]:
    """(kind, rest) of a spec; raises ValueError with the accepted forms."""
    if spec is None or spec == "demo":
        return "demo", ""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("hf", "openai", "ref") or not rest:
        raise ValueError(f"model spec {spec!r}: expected hf:PATH_OR_ID, openai:MODEL@BASE_URL, "
                         "ref:refuse-all, ref:comply-all or demo")
    if kind == "openai" and "@" not in rest:
        raise ValueError(f"model spec {spec!r}: expected openai:MODEL@BASE_URL")
    return kind, rest


def load_model(spec: str | None, budget: FrameBudget, options: ModelOptions = ModelOptions()) -> VideoLLM:
    kind, rest = parse_spec(spec)
    if kind == "ref":
        from videosafety.models.reference import ReferencePolicy

        return ReferencePolicy(rest)
    if kind == "openai":
        from videosafety.models.openai_api import OpenAIVideoLLM

        # split at the "@" that starts the URL, so a user:password@host URL stays whole
        cut = rest.find("@http")
        model, base_url = (rest[:cut], rest[cut + 1:]) if cut > 0 else rest.rpartition("@")[::2]
        urls = re.split(r",(?=https?://)", base_url)  # a comma inside one URL stays
        return OpenAIVideoLLM(model, urls if len(urls) > 1 else base_url, **options.openai)
    from videosafety.models.hf import HFVideoLLM

    if kind == "demo":
        from videosafety.models.demo import demo_model_path

        return HFVideoLLM(demo_model_path(), device=options.device, dtype=options.dtype,
                          batch_size=options.batch_size, budget=budget, name="demo")
    return HFVideoLLM(rest, device=options.device, dtype=options.dtype, batch_size=options.batch_size,
                      budget=budget, trust_remote_code=options.trust_remote_code)
