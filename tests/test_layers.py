"""Data flows one way (records -> video and models -> evaluation -> judges -> metrics -> reports;
train uses models and data): lower layers never import higher ones. Checked on the source with
``ast``, so every import counts, at module top or inside a function."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import videosafety

PACKAGE_DIR = Path(videosafety.__file__).resolve().parent

# module prefix -> module prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "videosafety.models": ("videosafety.train", "videosafety.evaluate", "videosafety.judges",
                           "videosafety.report", "videosafety.cli"),
    "videosafety.judges": ("videosafety.report", "videosafety.cli"),
    "videosafety": ("videosafety.cli",),  # the command line is the top: only __main__ calls it
}
ALLOWED_CLI_IMPORTERS = {"videosafety.__main__", "videosafety.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; ``from X import y`` counts as
    ``X`` and ``X.y`` (y may be a submodule), relative imports are resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def layer_violations(path: Path) -> list[str]:
    name = module_name(path)
    out = []
    for line, imported in imported_modules(path):
        for owner, forbidden in FORBIDDEN.items():
            if not (name == owner or name.startswith(owner + ".")):
                continue
            for bad in forbidden:
                if bad == "videosafety.cli" and name in ALLOWED_CLI_IMPORTERS:
                    continue
                if imported == bad or imported.startswith(bad + "."):
                    out.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line}: {name} imports {imported}")
    return out


SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_walk_sees_the_package():
    names = {module_name(p) for p in SOURCES}
    assert {"videosafety.models.hf", "videosafety.models.alarm", "videosafety.judges.run",
            "videosafety.train.grpo", "videosafety.cli", "videosafety.__main__"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_a_higher_layer(path):
    assert layer_violations(path) == []


def test_a_violation_is_found(tmp_path, monkeypatch):
    """The checker itself: a models module importing train (absolute, relative, inside a
    function) and a judge importing the CLI are all caught."""
    fake = tmp_path / "videosafety"
    (fake / "models").mkdir(parents=True)
    (fake / "judges").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", fake)
    bad_model = fake / "models" / "bad.py"
    bad_model.write_text("import os\nfrom videosafety.train.alarm import X\nfrom ..train import grpo\n"
                         "def f():\n    import videosafety.report.html\n")
    bad_judge = fake / "judges" / "bad.py"
    bad_judge.write_text("from videosafety import cli\n")
    good = fake / "judges" / "good.py"
    good.write_text("from videosafety.models.hf import HFVideoLLM\nfrom . import base\n")
    found = layer_violations(bad_model)
    assert [v.split(": ", 1)[1] for v in found] == [
        "videosafety.models.bad imports videosafety.train.alarm",
        "videosafety.models.bad imports videosafety.train.alarm.X",
        "videosafety.models.bad imports videosafety.train",
        "videosafety.models.bad imports videosafety.train.grpo",
        "videosafety.models.bad imports videosafety.report.html",
    ]
    assert len(layer_violations(bad_judge)) == 2  # "videosafety.cli" via the judges rule and the package rule
    assert layer_violations(good) == []
