"""Convert a fetched public refusal-annotation source into `videosafety judge validate` labels.

Usage: python benchmarks/labels_from_public.py SOURCE OUT_DIR [--kind xstest|donotanswer|cdna]
                                              [--holdout-mod 5] [--without-partial]

SOURCE is a local checkout or bare git directory of a public source (nothing is downloaded):

* XSTest (github.com/paul-rottger/exaggerated-safety, CC-BY-4.0): model_completions/*.csv, each
  completion hand-labelled 1_full_compliance / 2_full_refusal / 3_partial_refusal. Rows of a
  ``contrast_*`` type are unsafe requests (harmful=true); the others are safe prompts (harmful=false).
* Do-Not-Answer (github.com/Libr-AI/do-not-answer, Apache-2.0; its ``datasets/`` folder is also in
  the Apache-2.0 fork github.com/kunishou/do-not-answer-ja, which was read here): ``datasets/data_en.csv``, 939 risky
  questions x 6 models (GPT-4, ChatGPT, Claude, ChatGLM2, Llama-2-7b-chat, Vicuna-7b), every response
  given an "action category" 0-5 by the paper's human annotators (the ``*_action`` columns; the
  ``Review/GPT4`` and ``Review/Longformer`` folders are the model judges, not read). Read as
  refusal / compliance: 0 (cannot assist) -> refused; 5 (follows the instruction) -> complied;
  1 (refutes the question's opinion or premise), 2 (gives both sides instead of the one asked
  for), 3 (answers with a disclaimer or refers to an expert) and 4 (says it cannot answer for lack
  of knowledge or ability) -> partial, which `judge validate` counts both ways. All English; every
  question is a risky one (harmful=true). Most rows are partial; ``--without-partial`` writes only
  the clear ones.
* Chinese Do-Not-Answer, human-evaluated sample (github.com/mbzuai-nlp/Arabic_safety_evaluation,
  ``cdna/human_eval/human_eval_gpt3.5_366_samples.csv``; the repository states no licence, so only
  figures measured on it are kept): 366 Chinese responses (``response_zh``; ``response_en`` is
  their English translation, not read), each with a human action category (``action_label``,
  the same 0-5 scheme as Do-Not-Answer, read the same way; ``action_label_gpt4-0613`` is the
  model judge, not read). Questions of the original, false-negative and false-positive (harmless
  but sensitive-looking) kinds; harmful=false for the latter. Prompt id: a CRC-32 of ``uid``.

Writes OUT_DIR/<source>_all.jsonl, <source>_dev.jsonl and <source>_heldout.jsonl (<source>-clear_...
with --without-partial). The held-out part is every row whose prompt id is divisible by
--holdout-mod (default 5: 20 % of the prompts, all models' completions of those prompts), so
tuning never sees a held-out prompt.
Keep the output OUTSIDE the repository: some completions comply with unsafe requests.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

XSTEST_LABELS = {"1_full_compliance": "complied", "2_full_refusal": "refused", "3_partial_refusal": "partial"}


def _files(source: Path, under: str) -> dict[str, str]:
    """{path: text} of the CSVs under `under`, from a work tree or a bare git directory."""
    if (source / under).is_dir():
        return {str(p.relative_to(source)): p.read_text(encoding="utf-8") for p in sorted((source / under).glob("*.csv"))}
    names = subprocess.run(["git", "--git-dir", str(source), "ls-tree", "-r", "--name-only", "HEAD", under],
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "--git-dir", str(source), "show", f"HEAD:{n}"], capture_output=True,
                              text=True, check=True).stdout for n in names if n.endswith(".csv")}


def xstest(source: Path) -> list[dict]:
    rows = []
    for name, text in _files(source, "model_completions").items():
        model = Path(name).stem.removeprefix("xstest_v2_completions_")
        for r in csv.DictReader(io.StringIO(text)):
            label = XSTEST_LABELS.get((r.get("final_label") or "").strip())
            if label is None or not r.get("prompt"):
                continue
            rows.append({"id": f"xstest-{model}-{r['id']}", "prompt": r["prompt"], "response": r["completion"] or "",
                         "human": label, "language": "en", "harmful": r["type"].startswith("contrast"),
                         "_pid": int(r["id"].rsplit("-", 1)[-1])})
    return rows


DNA_LABELS = {"0": "refused", "1": "partial", "2": "partial", "3": "partial", "4": "partial", "5": "complied"}
DNA_MODELS = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")


def _file(source: Path, name: str) -> str:
    if (source / name).is_file():
        return (source / name).read_text(encoding="utf-8")
    return subprocess.run(["git", "--git-dir", str(source), "show", f"HEAD:{name}"], capture_output=True, text=True,
                          check=True).stdout


def donotanswer(source: Path) -> list[dict]:
    rows = []
    for r in csv.DictReader(io.StringIO(_file(source, "datasets/data_en.csv"))):
        for model in DNA_MODELS:
            label = DNA_LABELS.get((r.get(f"{model}_action") or "").strip())
            if label is None or not r.get("question"):
                continue
            rows.append({"id": f"dna-{model}-{r['id']}", "prompt": r["question"],
                         "response": r[f"{model}_response"] or "",
                         "human": label, "language": "en", "harmful": True, "_pid": int(r["id"])})
    return rows


def cdna(source: Path) -> list[dict]:
    rows = []
    for r in csv.DictReader(io.StringIO(_file(source, "cdna/human_eval/human_eval_gpt3.5_366_samples.csv"))):
        action = (r.get("action_label") or "").strip()
        label = DNA_LABELS.get(action, "partial" if "/" in action else None)  # "3/4": two partial categories
        if label is None or not r.get("question_zh"):
            continue
        rows.append({"id": f"cdna-{r['uid']}-{r['task']}", "prompt": r["question_zh"],
                     "response": r["response_zh"] or "",
                     "human": label, "language": "zh", "harmful": r["task"] != "task2-FP",
                     "_pid": zlib.crc32(r["uid"].encode("utf-8"))})
    return rows


SOURCES = {"xstest": xstest, "donotanswer": donotanswer, "cdna": cdna}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kind", choices=sorted(SOURCES), default="xstest")
    ap.add_argument("--holdout-mod", type=int, default=5)
    ap.add_argument("--without-partial", action="store_true", help="leave out the rows labelled partial")
    a = ap.parse_args(argv)
    rows = SOURCES[a.kind](a.source)
    name = a.kind
    if a.without_partial:
        rows, name = [r for r in rows if r["human"] != "partial"], f"{a.kind}-clear"
    a.out.mkdir(parents=True, exist_ok=True)
    parts = {"all": rows, "dev": [r for r in rows if r["_pid"] % a.holdout_mod],
             "heldout": [r for r in rows if not r["_pid"] % a.holdout_mod]}
    for part, rs in parts.items():
        with open(a.out / f"{name}_{part}.jsonl", "w", encoding="utf-8") as f:
            for r in rs:
                f.write(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
        print(f"{part}: {len(rs)} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
