"""Training: AT-SFT (the alarm-token model itself is ``videosafety.models.alarm``), CoT SFT, GRPO,
their rewards, and the demo model's recipe (``train.demo_model``).

Submodules import torch / transformers; this package itself imports nothing heavy."""
