"""Shipped training configs. `videosafety train ... --config NAME` takes a file path or the
name of a file here (without .yaml): the paper's recipe per stage and tiny CPU variants."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resolve_config(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = resources.files("videosafety.configs") / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    names = sorted(x.name[:-5] for x in resources.files("videosafety.configs").iterdir() if x.name.endswith(".yaml"))
    raise FileNotFoundError(f"{name_or_path}: no such config file, and no shipped config of that name "
                            f"(shipped: {', '.join(names)})")
