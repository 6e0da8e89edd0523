"""videosafety: measure and improve the safety of video large language models."""

__version__ = "0.1.0"
