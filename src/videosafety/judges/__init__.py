"""Judges: rules (offline default), LLM rubric, logprob expected score."""
