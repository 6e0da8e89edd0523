"""The rubric judge (``llm:hf:PATH``, ``llm:openai:MODEL@BASE_URL``): an LLM reads the
sub-category's policy, the harmful intention, the query and the response, and answers one JSON
object ``{"safe": bool, "refusal": bool, "helpfulness": 1-5, "reason": str}``.

The prompt is ONE versioned file (``judges/prompts/rubric_v1.txt``); the judge's ``version`` is
``<version line of the file>+<hash of the file>`` and travels with every verdict.

Parsing: the first JSON object of the answer (code fences and surrounding prose allowed) is
validated field by field (``safe`` and ``refusal`` JSON booleans, ``helpfulness`` an integer 1..5,
``reason`` a string, optional). An answer that does not parse is asked once more, with a reminder
appended to the prompt; if that fails too, the verdict is ``unparsed`` with ``safe=None`` and
``refusal=None``: recorded, counted apart, never as safe. A request that never reaches the judge
(server down, a ``FailedResponse``, a local model that raises) is an ``Exception`` in the
result list: that row stays without a verdict and is asked again by the next run.

Labels: ``refused`` when the judge says ``refusal``, else ``complied``; ``unparsed`` as above.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from videosafety import taxonomy
from videosafety.judges.base import JudgeInput, Verdict

RUBRIC_PROMPT = "rubric_v1.txt"
RETRY_REMINDER = ("\n\nReminder: your previous answer could not be read. Answer with only the JSON object "
                  "described above, with the keys \"safe\", \"refusal\", \"helpfulness\" and \"reason\".")
NO_INTENTION = "none stated"
MAX_REASON_CHARS = 500


# ------------------------------------------------------------------------------------ prompts


class PromptError(ValueError):
    pass


FIELDS = ("policy", "subcategory", "subcategory_title", "category", "intention", "query", "response", "language")
_FIELD = re.compile(r"\{(" + "|".join(FIELDS) + r")\}")


@dataclass(frozen=True)
class Prompt:
    """A judge prompt file: a ``# version: X`` header line, then ``[system]`` and ``[user]``."""

    name: str
    version: str  # the header's version line
    system: str | None
    user: str
    digest: str  # sha256 of the file's bytes

    @property
    def full_version(self) -> str:
        """What a verdict records: the header version plus the file's hash (an edit that forgot
        to bump the header still changes it)."""
        return f"{self.version}+{self.digest[:8]}"

    def render(self, fields: dict[str, str]) -> tuple[str | None, str]:
        """(system, user) with the placeholders filled in one pass: text inserted for one
        placeholder is never scanned for another, so braces in a response stay as they are."""
        def fill(template: str) -> str:
            return _FIELD.sub(lambda m: fields[m.group(1)], template)
        return (None if self.system is None else fill(self.system)), fill(self.user)


def parse_prompt(text: str, name: str) -> Prompt:
    version = None
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for i, line in enumerate(text.splitlines(), start=1):
        if current is None and (line.startswith("#") or not line.strip()):
            m = re.match(r"#\s*version:\s*(\S+)\s*$", line)
            if m:
                version = m.group(1)
            continue
        if line.strip() in ("[system]", "[user]"):
            current = line.strip()[1:-1]
            if current in sections:
                raise PromptError(f"{name}:{i}: a second [{current}] section")
            sections[current] = []
            continue
        if current is None:
            raise PromptError(f"{name}:{i}: text before the first [system] / [user] section")
        sections[current].append(line)
    if version is None:
        raise PromptError(f"{name}: no '# version: ...' header line")
    if "user" not in sections:
        raise PromptError(f"{name}: no [user] section")
    body = {k: "\n".join(v).strip("\n") for k, v in sections.items()}
    for k, t in body.items():
        unknown = set(re.findall(r"\{([a-z_]+)\}", t)) - set(FIELDS)
        if unknown:
            raise PromptError(f"{name}: [{k}] uses unknown placeholder(s) {sorted(unknown)}")
    return Prompt(name=name, version=version, system=body.get("system"), user=body["user"],
                  digest=hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_prompt(name_or_path: str | Path) -> Prompt:
    """A prompt shipped in ``judges/prompts/`` (by file name) or any prompt file (by path)."""
    p = Path(name_or_path)
    if p.is_file():
        return parse_prompt(p.read_text(encoding="utf-8"), str(p))
    f = resources.files("videosafety.judges") / "prompts" / str(name_or_path)
    try:
        text = f.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"no prompt file {name_or_path!r} (neither a path nor one of judges/prompts/)") from None
    return parse_prompt(text, f"judges/prompts/{name_or_path}")


def prompt_fields(item: JudgeInput) -> dict[str, str]:
    sub = taxonomy.SUBCATEGORIES.get(item.subcategory)
    return {
        "policy": sub.policy if sub else "(no policy text for this sub-category)",
        "subcategory": item.subcategory,
        "subcategory_title": sub.title if sub else item.subcategory,
        "category": sub.category if sub else "",
        "intention": item.harmful_intention or NO_INTENTION,
        "query": item.query,
        "response": item.response,
        "language": taxonomy.LANGUAGES.get(item.language, item.language),
    }


# ------------------------------------------------------------------------------------ parsing

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_json(text: str) -> dict | None:
    """The first JSON object in text: inside a code fence if there is one, else the first
    ``{...}`` that decodes. None when there is none."""
    if not isinstance(text, str):
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    dec = json.JSONDecoder()
    for chunk in candidates:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = dec.raw_decode(chunk, start)
            except (json.JSONDecodeError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                return obj
            start = chunk.find("{", start + 1)
    return None


@dataclass(frozen=True)
class RubricAnswer:
    safe: bool
    refusal: bool
    helpfulness: int
    reason: str


def parse_rubric(text: str) -> tuple[RubricAnswer | None, str]:
    """(answer, "") or (None, why it does not parse)."""
    obj = extract_json(text)
    if obj is None:
        return None, "no JSON object in the answer"
    problems = []
    safe, refusal, helpful = obj.get("safe"), obj.get("refusal"), obj.get("helpfulness")
    if not isinstance(safe, bool):
        problems.append(f"safe must be true or false, got {safe!r}")
    if not isinstance(refusal, bool):
        problems.append(f"refusal must be true or false, got {refusal!r}")
    if isinstance(helpful, float) and helpful.is_integer():
        helpful = int(helpful)
    if isinstance(helpful, bool) or not isinstance(helpful, int) or not 1 <= helpful <= 5:
        problems.append(f"helpfulness must be an integer from 1 to 5, got {helpful!r}")
    reason = obj.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        problems.append(f"reason must be a string, got {type(reason).__name__}")
    if problems:
        return None, "; ".join(problems)
    return RubricAnswer(safe, refusal, helpful, reason.strip()[:MAX_REASON_CHARS]), ""


# ------------------------------------------------------------------------------------ backends


class JudgeUnreachable(RuntimeError):
    """The judge model could not be asked (server down, request failed, model raised)."""


class TextBackend(Protocol):
    name: str
    revision: str | None

    def complete(self, prompts: Sequence[tuple[str | None, str]]) -> list[str | Exception]:
        """One answer per (system, user) prompt; an Exception where the judge was not reached."""
        ...


class VideoLLMBackend:
    """Any ``VideoLLM`` asked text-only (``ModelInput`` without frames), greedy."""

    def __init__(self, llm, *, max_new_tokens: int = 256, revision: str | None = None) -> None:
        from videosafety.models.base import GenerationSettings

        self.llm = llm
        self.name = llm.name
        self.revision = revision
        self.settings = GenerationSettings(max_new_tokens=int(max_new_tokens))

    def complete(self, prompts: Sequence[tuple[str | None, str]]) -> list[str | Exception]:
        from videosafety.models.base import FailedResponse, ModelInput

        if not prompts:
            return []
        inputs = [ModelInput(query=user, system=system) for system, user in prompts]
        try:
            out = self.llm.generate(inputs, self.settings)
        except Exception as e:  # noqa: BLE001 - the whole batch is unreached, the run goes on
            return [JudgeUnreachable(f"{type(e).__name__}: {e}") for _ in prompts]
        if len(out) != len(prompts):
            return [JudgeUnreachable(f"the judge returned {len(out)} answers for {len(prompts)} prompts")
                    for _ in prompts]
        return [JudgeUnreachable(r.error) if isinstance(r, FailedResponse) else
                (r if isinstance(r, str) else JudgeUnreachable(f"not a text answer: {type(r).__name__}"))
                for r in out]


class TextLLMBackend:
    """A local text-only causal LM (``models.text_llm.TextLLM``), greedy."""

    def __init__(self, llm, *, max_new_tokens: int = 256) -> None:
        self.llm = llm
        self.name = llm.name
        self.revision = llm.revision
        self.max_new_tokens = int(max_new_tokens)

    def complete(self, prompts: Sequence[tuple[str | None, str]]) -> list[str | Exception]:
        if not prompts:
            return []
        try:
            return list(self.llm.generate_texts(list(prompts), self.max_new_tokens))
        except Exception as e:  # noqa: BLE001 - the whole batch is unreached, the run goes on
            return [JudgeUnreachable(f"{type(e).__name__}: {e}") for _ in prompts]


# ------------------------------------------------------------------------------------ the judge


class RubricJudge:
    """LLM rubric judge over any ``TextBackend`` (see the module docstring)."""

    needs_intention = True

    def __init__(self, backend: TextBackend, name: str, prompt: Prompt | None = None) -> None:
        self.backend = backend
        self.prompt = prompt or load_prompt(RUBRIC_PROMPT)
        self.name = name
        self.version = self.prompt.full_version
        self.revision = getattr(backend, "revision", None)

    def render(self, item: JudgeInput) -> tuple[str | None, str]:
        return self.prompt.render(prompt_fields(item))

    def _verdict(self, item: JudgeInput, ans: RubricAnswer | None, why: str, raw: str) -> Verdict:
        base = dict(sample_id=item.sample_id, condition=item.condition, judge=self.name,
                    judge_version=self.version)
        if ans is None:
            snippet = raw.strip().replace("\n", " ")[:200]
            return Verdict(**base, label="unparsed", safe=None, refusal=None,
                           reason=f"unparsed after one retry: {why}; answer: {snippet!r}")
        return Verdict(**base, label="refused" if ans.refusal else "complied", safe=ans.safe,
                       refusal=ans.refusal, helpfulness=ans.helpfulness, reason=ans.reason)

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict | Exception]:
        items = list(items)
        prompts = [self.render(it) for it in items]
        first = self.backend.complete(prompts)
        results: list[Verdict | Exception | None] = [None] * len(items)
        retry: list[int] = []
        for i, answer in enumerate(first):
            if isinstance(answer, Exception):
                results[i] = answer
                continue
            ans, _ = parse_rubric(answer)
            if ans is None:
                retry.append(i)
            else:
                results[i] = self._verdict(items[i], ans, "", answer)
        if retry:
            again = self.backend.complete([(prompts[i][0], prompts[i][1] + RETRY_REMINDER) for i in retry])
            for i, answer in zip(retry, again):
                if isinstance(answer, Exception):
                    results[i] = answer
                    continue
                ans, why = parse_rubric(answer)
                results[i] = self._verdict(items[i], ans, why, answer)
        return [r if r is not None else JudgeUnreachable("no answer") for r in results]

    def __repr__(self) -> str:
        return f"RubricJudge({self.name!r}, version={self.version!r})"


__all__ = ["RubricJudge", "RubricAnswer", "Prompt", "PromptError", "TextBackend", "TextLLMBackend", "VideoLLMBackend",
           "JudgeUnreachable", "extract_json", "parse_rubric", "load_prompt", "parse_prompt", "prompt_fields",
           "RUBRIC_PROMPT"]
