"""Video LLM backends behind one interface (``VideoLLM``, see ``base``).

``HFVideoLLM`` (transformers) and the ``tiny`` test-model builders import torch/transformers, so
they are loaded lazily: ``from videosafety.models import HFVideoLLM`` works, but importing this
package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import FailedResponse, GenerationSettings, ModelInput, NoVisualTokensError, VideoLLM

if TYPE_CHECKING:  # pragma: no cover
    from .hf import HFVideoLLM

__all__ = ["FailedResponse", "GenerationSettings", "HFVideoLLM", "ModelInput", "NoVisualTokensError", "VideoLLM"]


def __getattr__(name: str) -> Any:
    if name == "HFVideoLLM":
        from .hf import HFVideoLLM

        return HFVideoLLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
