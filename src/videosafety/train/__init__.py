"""Training: alarm tokens (``videosafety.models.alarm``), AT-SFT, CoT SFT, GRPO and their rewards.

Submodules import torch / transformers; this package itself imports nothing heavy."""
