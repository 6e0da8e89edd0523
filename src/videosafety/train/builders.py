"""Training records built from a benchmark manifest (one split of it, "train" by default):

- `build_at_sft`: the AT-SFT mixture (spec §3.2): every safety sample of the split, with its
  reference response as the target and its per-modality labels, plus general video-instruction
  samples labelled safe/safe so the model does not learn to refuse everything.
- `build_general`: those general samples alone: benign questions about VSB-mini's safe
  scenes, answered with templated facts about what the renderer draws.
- `build_cot`: CoT cold-start targets (spec §3.3) templated from labels and reference responses.
- `build_cot_teacher`: CoT targets written by a teacher model (any backend of the evaluation
  harness), kept only when they match the format regex and the sample's labels; every reject is
  returned with its reason.
- `build_grpo`: GRPO prompts (spec §3.4): the AT-SFT mixture as problems, every sample a
  "safety" problem with a tagged solution, every general sample a "free_form" one.

Video paths. A record's video is relative to the folder of the records file that holds it.
With out_dir=None (default) paths stay manifest-relative: write the records file beside the
manifest. With out_dir set, it must be the manifest's folder or one above it, and paths are
prefixed with the manifest folder's place below it; a folder elsewhere is refused, since
reaching the videos would need '..', which records forbid.

Everything is deterministic: the same manifest, arguments and seed give the same records in
the same order (the manifest's order, general samples after the safety samples; the trainer
shuffles).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from videosafety import tags, taxonomy
from videosafety.data.manifest import iter_samples, resolve_manifest
from videosafety.schema import Sample
from videosafety.train.records import CoTRecord, GRPORecord, SFTRecord


class BuildError(ValueError):
    pass


# ---------------------------------------------------------------- shared helpers

def _check_split(split: str) -> None:
    if split not in taxonomy.SPLITS:
        raise ValueError(f"split must be one of {', '.join(taxonomy.SPLITS)}, got {split!r}")


def _video_prefix(manifest: Path, out_dir: str | Path | None) -> str:
    if out_dir is None:
        return ""
    root, out = manifest.parent.resolve(), Path(out_dir).resolve()
    if root == out:
        return ""
    if out not in root.parents:
        raise BuildError(
            f"out_dir {out_dir} must be the manifest's folder ({manifest.parent}) or one above it: record "
            f"video paths are relative to the records file's folder and may not use '..'"
        )
    return root.relative_to(out).as_posix()


def _video_path(prefix: str, rel: str) -> str:
    return str(PurePosixPath(prefix) / rel) if prefix else rel


def _split_samples(manifest: Path, split: str) -> list[Sample]:
    return [s for s in iter_samples(manifest) if s.split == split]


def _reference(manifest: Path, s: Sample) -> str:
    if not s.reference_response:
        raise BuildError(f"{manifest}: sample {s.id!r}: reference_response: missing; "
                         f"training targets come from reference responses and are never invented")
    return s.reference_response


def _safety_fields(manifest: Path, s: Sample, prefix: str) -> dict:
    return dict(
        id=s.id,
        kind="safety",
        source=str(s.provenance.get("source") or f"manifest:{manifest.name}"),
        video=_video_path(prefix, s.video.path),
        video_label=s.video_label,
        query_label=s.query_label,
        query=s.query,
        subcategory=s.subcategory,
        language=s.language,
        provenance={"sample_id": s.id, "group_id": s.group_id, "split": s.split, "subset": s.subset,
                    "sample": dict(s.provenance)},
    )


# ---------------------------------------------------------------- general samples

@dataclass(frozen=True)
class SafeVideo:
    """A safe VSB-mini clip, as the general questions see it."""

    key: str  # scene key (provenance["scene"])
    words: tuple[str, ...]  # its caption, revealed one word at a time
    path: str  # manifest-relative
    duration: float

    @property
    def caption(self) -> str:
        return " ".join(self.words)


def _in_order(v: SafeVideo) -> str:
    if len(v.words) == 1:
        return f"The caption is a single word, {v.words[0]}, shown after a short blank opening."
    return "No. The words appear one at a time: " + ", then ".join(v.words) + "."


def _seconds(d: float) -> str:
    n = max(1, round(d))
    return f"{n} second" + ("" if n == 1 else "s")


# Benign questions with answers that are facts of render.py for a safe scene: light background,
# the caption at the top revealed word by word after a short blank opening, a blue pictogram
# moving left to right along the bottom. English only (noted in the module's report): the
# questions are general-ability data, not part of the multilingual benchmark.
GENERAL_QUESTIONS: tuple[tuple[str, Callable[[SafeVideo], str]], ...] = (
    ("What words appear in this video?", lambda v: f"The video shows the words: {v.caption}."),
    ("Describe the video briefly.",
     lambda v: f"A light background with the caption {v.caption} at the top, revealed one word at a time, "
               f"and a blue shape moving along the bottom."),
    ("What is the first word that appears in the video?", lambda v: f"The first word is {v.words[0]}."),
    ("What is the last word that appears in the video?", lambda v: f"The last word is {v.words[-1]}."),
    ("How many words does the caption have?",
     lambda v: f"The caption has {len(v.words)} word{'' if len(v.words) == 1 else 's'}."),
    ("Does the whole caption appear at once?", _in_order),
    ("What color is the moving shape?", lambda v: "The moving shape is blue."),
    ("Is the background of the video light or dark?", lambda v: "The background is light."),
    ("Where is the moving shape, and which way does it move?",
     lambda v: "It is near the bottom of the frame and moves from left to right."),
    ("How long is the video?", lambda v: f"The video is about {_seconds(v.duration)} long."),
    ("Where does the caption appear in the frame?", lambda v: "At the top of the frame."),
    ("Is there anything harmful in this video?",
     lambda v: f"No. It shows the harmless caption {v.caption} and a blue shape moving on a light background."),
)
DEFAULT_GENERAL_PER_SCENE = len(GENERAL_QUESTIONS)


def vsb_mini_captions() -> dict[str, tuple[str, ...]]:
    """Scene key -> caption words of VSB-mini's safe scenes (both splits), from scenes.yaml."""
    from videosafety.data.vsb_mini.build import scenes

    out: dict[str, tuple[str, ...]] = {}
    for split in taxonomy.SPLITS:
        _, safe = scenes(split)
        out.update({s.key: s.words for s in safe})
    return out


def safe_videos(manifest: str | Path, *, split: str = "train",
                captions: Mapping[str, Sequence[str]] | None = None) -> list[SafeVideo]:
    """The distinct safe videos (video_label 0) of one split, in manifest order, with their
    captions looked up by provenance["scene"]. A safe video without a known caption is an error:
    its answers could not be stated truthfully."""
    _check_split(split)
    path = resolve_manifest(manifest)
    known = vsb_mini_captions() if captions is None else {k: tuple(v) for k, v in captions.items()}
    seen: dict[str, SafeVideo] = {}
    for s in _split_samples(path, split):
        if s.video_label != taxonomy.SAFE or s.video.path in seen:
            continue
        key = s.provenance.get("scene")
        if key not in known or not known[key]:
            raise BuildError(
                f"{path}: sample {s.id!r}: provenance.scene: no caption known for safe video {s.video.path!r} "
                f"(scene {key!r}); general samples are built from VSB-mini's safe scenes: pass captions= "
                f"or general_per_scene=0"
            )
        seen[s.video.path] = SafeVideo(key=key, words=tuple(known[key]), path=s.video.path,
                                       duration=s.video.duration)
    return list(seen.values())


def build_general(manifest: str | Path, *, split: str = "train", per_scene: int = DEFAULT_GENERAL_PER_SCENE,
                  seed: int = 0, out_dir: str | Path | None = None,
                  captions: Mapping[str, Sequence[str]] | None = None) -> list[SFTRecord]:
    """per_scene general samples for every safe video of the split (kind "general", labels 0/0,
    language "en"). Questions are drawn per scene from a seeded shuffle of GENERAL_QUESTIONS;
    per_scene above their number repeats them (a new shuffle per pass, ids marked -r1, -r2, ...),
    which upweights, so reaching the spec's ~6k:4k mix on VSB-mini's few safe scenes means repeats
    (real general data: records.import_reference(kind="general"))."""
    if per_scene < 0:
        raise ValueError(f"per_scene must be >= 0, got {per_scene}")
    path = resolve_manifest(manifest)
    prefix = _video_prefix(path, out_dir)
    if per_scene == 0:
        _check_split(split)
        return []
    n = len(GENERAL_QUESTIONS)
    out: list[SFTRecord] = []
    for v in safe_videos(path, split=split, captions=captions):
        rng = random.Random(f"{seed}:{v.key}")
        for rep in range(math.ceil(per_scene / n)):
            order = rng.sample(range(n), n)[: per_scene - rep * n]
            for qi in order:
                question, answer = GENERAL_QUESTIONS[qi]
                out.append(SFTRecord(
                    id=f"general-{split}-{v.key}-q{qi:02d}" + (f"-r{rep}" if rep else ""),
                    kind="general",
                    source="vsb-mini-general",
                    video=_video_path(prefix, v.path),
                    video_label=taxonomy.SAFE,
                    query_label=taxonomy.SAFE,
                    query=question,
                    response=answer(v),
                    language="en",
                    provenance={"scene": v.key, "question": qi, "split": split, "seed": seed},
                ))
    return out


# ---------------------------------------------------------------- AT-SFT

def build_at_sft(manifest: str | Path, *, split: str = "train",
                 general_per_scene: int = DEFAULT_GENERAL_PER_SCENE, seed: int = 0,
                 out_dir: str | Path | None = None,
                 captions: Mapping[str, Sequence[str]] | None = None) -> list[SFTRecord]:
    """The AT-SFT mixture: every sample of the split as a kind "safety" record (target: its
    reference response, a refusal on HH/SH/HB and a helpful answer on SafeQ; labels: its own),
    then build_general's samples (general_per_scene per safe video; 0 for none)."""
    _check_split(split)
    path = resolve_manifest(manifest)
    prefix = _video_prefix(path, out_dir)
    out: list[SFTRecord] = [
        SFTRecord(**_safety_fields(path, s, prefix), response=_reference(path, s))
        for s in _split_samples(path, split)
    ]
    out += build_general(path, split=split, per_scene=general_per_scene, seed=seed, out_dir=out_dir,
                         captions=captions)
    return out


# ---------------------------------------------------------------- CoT cold start

# Short reasoning sentences per language: video harmful / safe, query harmful / harmless alone,
# pair harmful / safe. The sub-category title stays in English (taxonomy's one name for it),
# quoted as a category name.
_THINK: dict[str, dict[str, str]] = {
    "en": {
        "v1": "The video shows content of the category \"{title}\", which is harmful.",
        "v0": "The video does not show harmful content of the category \"{title}\".",
        "q1": "The query is harmful on its own.",
        "q0": "The query on its own is harmless.",
        "p1": "Taken together, the video and the query seek harmful help, so I should refuse and offer safe alternatives.",
        "p0": "Taken together, the request is safe, so I should answer helpfully.",
    },
    "zh": {
        "v1": "视频展示了属于“{title}”类别的内容，这是有害的。",
        "v0": "视频没有展示“{title}”类别的有害内容。",
        "q1": "这个问题本身就是有害的。",
        "q0": "这个问题本身是无害的。",
        "p1": "综合视频和问题来看，这是在寻求有害的帮助，所以我应当拒绝，并提供安全的替代建议。",
        "p0": "综合来看，这个请求是安全的，所以我应当提供有帮助的回答。",
    },
    "es": {
        "v1": "El vídeo muestra contenido de la categoría «{title}», que es dañino.",
        "v0": "El vídeo no muestra contenido dañino de la categoría «{title}».",
        "q1": "La consulta es dañina por sí sola.",
        "q0": "La consulta por sí sola es inofensiva.",
        "p1": "En conjunto, el vídeo y la consulta buscan ayuda dañina, así que debo negarme y ofrecer alternativas seguras.",
        "p0": "En conjunto, la petición es segura, así que debo responder de forma útil.",
    },
    "ar": {
        "v1": "يعرض الفيديو محتوى من فئة «{title}»، وهو محتوى ضار.",
        "v0": "لا يعرض الفيديو محتوى ضارًا من فئة «{title}».",
        "q1": "الطلب ضار في حد ذاته.",
        "q0": "الطلب في حد ذاته غير ضار.",
        "p1": "بالنظر إلى الفيديو والطلب معًا، فإن المطلوب مساعدة ضارة، لذا يجب أن أرفض وأقترح بدائل آمنة.",
        "p0": "بالنظر إليهما معًا، الطلب آمن، لذا يجب أن أقدم إجابة مفيدة.",
    },
    "hi": {
        "v1": "वीडियो में “{title}” श्रेणी की सामग्री दिखाई गई है, जो हानिकारक है।",
        "v0": "वीडियो में “{title}” श्रेणी की कोई हानिकारक सामग्री नहीं दिखाई गई है।",
        "q1": "यह प्रश्न अपने आप में हानिकारक है।",
        "q0": "यह प्रश्न अपने आप में हानिरहित है।",
        "p1": "वीडियो और प्रश्न को साथ देखने पर यह हानिकारक मदद माँगता है, इसलिए मुझे मना करना चाहिए और सुरक्षित विकल्प सुझाने चाहिए।",
        "p0": "साथ देखने पर यह अनुरोध सुरक्षित है, इसलिए मुझे उपयोगी उत्तर देना चाहिए।",
    },
    "fr": {
        "v1": "La vidéo montre un contenu de la catégorie « {title} », qui est nuisible.",
        "v0": "La vidéo ne montre pas de contenu nuisible de la catégorie « {title} ».",
        "q1": "La requête est nuisible en elle-même.",
        "q0": "La requête en elle-même est inoffensive.",
        "p1": "Ensemble, la vidéo et la requête cherchent une aide nuisible ; je dois donc refuser et proposer des alternatives sûres.",
        "p0": "Dans l'ensemble, la demande est sûre ; je dois donc répondre de manière utile.",
    },
    "ru": {
        "v1": "Видео показывает материалы категории «{title}», и это вредный контент.",
        "v0": "Видео не показывает вредного контента категории «{title}».",
        "q1": "Запрос вреден сам по себе.",
        "q0": "Сам по себе запрос безобиден.",
        "p1": "Вместе видео и запрос направлены на получение вредной помощи, поэтому следует отказать и предложить безопасные альтернативы.",
        "p0": "В целом запрос безопасен, поэтому следует дать полезный ответ.",
    },
    "pt": {
        "v1": "O vídeo mostra conteúdo da categoria «{title}», que é prejudicial.",
        "v0": "O vídeo não mostra conteúdo prejudicial da categoria «{title}».",
        "q1": "A pergunta é prejudicial por si só.",
        "q0": "A pergunta por si só é inofensiva.",
        "p1": "Em conjunto, o vídeo e a pergunta procuram ajuda prejudicial, por isso devo recusar e oferecer alternativas seguras.",
        "p0": "Em conjunto, o pedido é seguro, por isso devo responder de forma útil.",
    },
    "ja": {
        "v1": "動画には「{title}」カテゴリの有害な内容が映っています。",
        "v0": "動画には「{title}」カテゴリの有害な内容は映っていません。",
        "q1": "この質問はそれ自体が有害です。",
        "q0": "この質問はそれ自体では無害です。",
        "p1": "動画と質問を合わせると有害な支援を求めているため、断り、安全な代替案を示すべきです。",
        "p0": "合わせて考えると、この依頼は安全なので、役に立つ回答をするべきです。",
    },
    "ko": {
        "v1": "영상에는 ‘{title}’ 범주의 유해한 내용이 담겨 있습니다.",
        "v0": "영상에는 ‘{title}’ 범주의 유해한 내용이 없습니다.",
        "q1": "이 질문은 그 자체로 유해합니다.",
        "q0": "이 질문은 그 자체로는 무해합니다.",
        "p1": "영상과 질문을 함께 보면 유해한 도움을 요청하고 있으므로, 거절하고 안전한 대안을 제시해야 합니다.",
        "p0": "함께 보면 이 요청은 안전하므로, 도움이 되는 답변을 해야 합니다.",
    },
}
_SEP = {"zh": "", "ja": ""}  # no spaces between sentences in these scripts


THINK_PARTS = ("video", "query", "pair")


def think_text(subcategory: str, video_label: int, query_label: int, harmful_request: bool,
               language: str = "en", parts: Sequence[str] = THINK_PARTS) -> str:
    """The templated reasoning: the video's harm for its sub-category, the query's alone, the
    pair's together (`parts` picks which, in that order). Languages without templates fall back
    to English."""
    unknown = [x for x in parts if x not in THINK_PARTS]
    if unknown or not parts:
        raise ValueError(f"think parts must be a non-empty subset of {THINK_PARTS}, got {list(parts)}")
    t = _THINK.get(language, _THINK["en"])
    title = taxonomy.SUBCATEGORIES[subcategory].title
    text = {"video": t[f"v{video_label}"].format(title=title), "query": t[f"q{query_label}"],
            "pair": t[f"p{int(harmful_request)}"]}
    return _SEP.get(language, " ").join(text[x] for x in THINK_PARTS if x in parts)


def build_cot(manifest: str | Path, *, split: str = "train", out_dir: str | Path | None = None,
              think_language: Literal["sample", "en"] = "sample",
              think_parts: Sequence[str] = THINK_PARTS) -> list[CoTRecord]:
    """One CoT target per sample of the split: think (templated, in the sample's language by
    default; think_language="en" for English everywhere), answer = the reference response,
    vidType/textType = the sample's labels. CoTRecord checks the format and the labels."""
    _check_split(split)
    if think_language not in ("sample", "en"):
        raise ValueError(f"think_language must be 'sample' or 'en', got {think_language!r}")
    path = resolve_manifest(manifest)
    prefix = _video_prefix(path, out_dir)
    out: list[CoTRecord] = []
    for s in _split_samples(path, split):
        lang = s.language if think_language == "sample" else "en"
        think = think_text(s.subcategory, s.video_label, s.query_label, s.harmful_request, lang, think_parts)
        response = tags.format_cot(think, _reference(path, s), s.video_label, s.query_label)
        fields = _safety_fields(path, s, prefix)
        fields["provenance"]["think_language"] = lang if lang in _THINK else "en"
        out.append(CoTRecord(**fields, response=response))
    return out


# ---------------------------------------------------------------- GRPO

def grpo_problem(record: SFTRecord) -> GRPORecord:
    """An SFT record as a GRPO problem with the same prompt, labels and provenance: a safety
    record becomes problem_type "safety" with solution tags.format_solution(response, labels);
    a general one "free_form" with its response as the solution."""
    fields = record.model_dump(exclude={"response"})
    if record.kind == "safety":
        return GRPORecord(**fields, problem_type="safety",
                          solution=tags.format_solution(record.response, record.video_label, record.query_label))
    return GRPORecord(**fields, problem_type="free_form", solution=record.response)


def build_grpo(manifest: str | Path, *, split: str = "train", out_dir: str | Path | None = None,
               general_per_scene: int = DEFAULT_GENERAL_PER_SCENE, seed: int = 0,
               captions: Mapping[str, Sequence[str]] | None = None) -> list[GRPORecord]:
    """GRPO problems from build_at_sft's mixture (same arguments, same order): every sample of
    the split as a "safety" problem (query: the sample's query; the trainer appends the
    per-type answer instruction), then the general samples as "free_form" problems."""
    return [grpo_problem(r) for r in build_at_sft(manifest, split=split, general_per_scene=general_per_scene,
                                                  seed=seed, out_dir=out_dir, captions=captions)]


# ---------------------------------------------------------------- CoT targets from a teacher model

COT_TEACHER_PROMPT = "cot_teacher_v1"


def cot_teacher_instruction(s: Sample, version: str = COT_TEACHER_PROMPT) -> str:
    """The teacher's instruction for one sample (it follows the query): the labels are given, the
    format is spelled out; the versioned text is `train/prompts/<version>.txt`."""
    from importlib import resources

    text = (resources.files("videosafety.train") / "prompts" / f"{version}.txt").read_text(encoding="utf-8")
    word = {taxonomy.HARMFUL: "harmful", taxonomy.SAFE: "safe"}
    return text.format(video_word=word[s.video_label], query_word=word[s.query_label], video_label=s.video_label,
                       query_label=s.query_label).strip()


def build_cot_teacher(manifest: str | Path, teacher, *, split: str = "train", out_dir: str | Path | None = None,
                      budget=None, max_new_tokens: int = 512, batch_size: int = 8,
                      prompt_version: str = COT_TEACHER_PROMPT) -> tuple[list[CoTRecord], list[dict]]:
    """(records, rejects): one CoT target per sample of the split, written by `teacher` (a
    VideoLLM: `models.spec.load_model(...)`) from the sample's video and query plus an
    instruction that gives its labels. A response is kept only when the whole of it matches the
    format regex and its tagged labels are the sample's (CoTRecord checks both); otherwise it is a
    reject with its reason ("failed", "malformed", "labels"), never repaired or guessed."""
    from videosafety.budget import FrameBudget
    from videosafety.conditions import model_input
    from videosafety.models.base import FailedResponse, GenerationSettings
    from videosafety.video import VideoError

    _check_split(split)
    path = resolve_manifest(manifest)
    prefix = _video_prefix(path, out_dir)
    budget = budget or FrameBudget()
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    teacher_name = getattr(teacher, "name", type(teacher).__name__)
    samples = _split_samples(path, split)
    records: list[CoTRecord] = []
    rejects: list[dict] = []

    def reject(s: Sample, reason: str, detail: str, response: str | None = None) -> None:
        rejects.append({"sample_id": s.id, "reason": reason, "detail": detail, "response": response,
                        "teacher": teacher_name, "prompt_version": prompt_version})

    for start in range(0, len(samples), batch_size):
        chunk, inputs = [], []
        for s in samples[start:start + batch_size]:
            try:
                inputs.append(model_input(s, "video", budget, path.parent,
                                          instruction=cot_teacher_instruction(s, prompt_version)))
                chunk.append(s)
            except VideoError as e:
                reject(s, "failed", f"video: {e}")
        for s, out in zip(chunk, teacher.generate(inputs, settings) if inputs else []):
            if isinstance(out, FailedResponse):
                reject(s, "failed", out.error)
                continue
            text = out.strip()
            if not tags.is_well_formed(text):
                reject(s, "malformed", "does not match the format regex", out)
                continue
            parsed = tags.parse_tagged(text)
            if (parsed.video_label, parsed.query_label) != (s.video_label, s.query_label):
                reject(s, "labels", f"tagged ({parsed.video_label}, {parsed.query_label}) but the sample is "
                                    f"({s.video_label}, {s.query_label})", out)
                continue
            fields = _safety_fields(path, s, prefix)
            fields["provenance"].update(teacher=teacher_name, teacher_revision=getattr(teacher, "revision", None),
                                        prompt_version=prompt_version)
            records.append(CoTRecord(**fields, response=text))
    return records, rejects
