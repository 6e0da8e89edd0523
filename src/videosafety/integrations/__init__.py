"""Integrations with other evaluation harnesses: inspect_ai (``integrations.inspect``) and
lmms-eval (the task folder ``integrations/lmms_eval``). Each reuses our plan, prompts, frame
sampling, judges and metrics; none of them is imported by the rest of the package."""
