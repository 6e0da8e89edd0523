"""Throughput of the rules judge on one core.

Synthetic responses in the ten languages, deterministic for a seed: 40 % refusals (curated
phrasings and VSB-mini's reference refusals), 30 % compliance openings followed by a placeholder
(no content), 30 % neutral text with no marker at all (the slowest case: the whole opening the
rules read is scanned). Each response gets 0 to 8 neutral filler sentences, so lengths run from
about 10 to about 900 characters. A last line times the worst case: 2,000-character answers
without any marker, per language. Times ``rules.classify`` (label only) and ``RulesJudge.judge``
(Verdict objects, as ``judge_run`` uses it), single-threaded, in CPU time of this process, and
checks every label.

Then ``judge_run`` end to end on a synthetic run directory of ``--run-rows`` rows (reading
responses.jsonl, SQLite cache, verdict file): a first run (everything judged) and a second one
(everything from the cache).

    python benchmarks/bench_judge.py [--n 200000] [--seed 0] [--repeats 3] [--run-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from videosafety import taxonomy
from videosafety.data.vsb_mini.text import load_texts
from videosafety.judges.base import JudgeInput
from videosafety.judges.rules import RulesJudge, classify, rules_version
from videosafety.judges.run import judge_run

# CPU time of this process, not wall time: the figure is per core, and on a shared machine wall
# time mostly measures the other jobs (it moved 5x with the load average).
clock = time.process_time

REFUSALS = {
    "en": ["I can't help with that request.", "I'm sorry, but I won't do this.", "I cannot provide that."],
    "zh": ["我不能帮助你做这件事。", "抱歉，我无法提供这方面的信息。"],
    "es": ["No puedo ayudarte con eso.", "Lo siento, pero eso no es posible."],
    "ar": ["لا أستطيع مساعدتك في هذا الطلب.", "لا يمكنني المساعدة في ذلك."],
    "hi": ["मैं मदद नहीं कर सकता।", "माफ़ कीजिए, लेकिन मैं यह नहीं कर सकता।"],
    "fr": ["Je ne peux pas vous aider avec cela.", "Désolé, mais ce n'est pas possible."],
    "ru": ["Я не могу помочь с этим.", "Извините, но это невозможно."],
    "pt": ["Não posso ajudar com isso.", "Desculpe, mas isso não é possível."],
    "ja": ["申し訳ありませんが、お手伝いできません。", "そのご依頼にはお応えできません。"],
    "ko": ["죄송하지만 도와드릴 수 없습니다.", "그 요청은 도와드릴 수 없어요."],
}
COMPLIANCE = {
    "en": ["Sure, here is what you asked for:", "Here's how to do it:", "Step 1:"],
    "zh": ["当然可以！以下是步骤：", "首先，"],
    "es": ["¡Claro! Aquí tienes los pasos:", "Paso 1:"],
    "ar": ["بالتأكيد! إليك الخطوات:", "الخطوة الأولى:"],
    "hi": ["ज़रूर! यह रहे चरण:", "सबसे पहले,"],
    "fr": ["Bien sûr ! Voici comment faire :", "Étape 1 :"],
    "ru": ["Конечно! Вот как это сделать:", "Шаг 1:"],
    "pt": ["Claro, aqui está o passo a passo:", "Passo 1:"],
    "ja": ["もちろんです！以下の手順です：", "ステップ1："],
    "ko": ["물론입니다! 다음은 단계입니다:", "1단계:"],
}
FILLER = {
    "en": ["The video shows a street at night.", "People walk past a row of shops.", "The weather looks calm and dry."],
    "zh": ["视频里有一条街道。", "人们从一排商店前走过。", "天气看起来很平静。"],
    "es": ["El video muestra una calle de noche.", "La gente pasa frente a unas tiendas.", "El tiempo parece tranquilo."],
    "ar": ["يُظهر الفيديو شارعًا في الليل.", "يمر الناس أمام صف من المتاجر.", "يبدو الطقس هادئًا."],
    "hi": ["वीडियो में रात की एक सड़क दिखाई देती है।", "लोग दुकानों की एक कतार के पास से गुज़रते हैं।", "मौसम शांत लगता है।"],
    "fr": ["La vidéo montre une rue la nuit.", "Des gens passent devant des boutiques.", "Le temps semble calme."],
    "ru": ["На видео показана улица ночью.", "Люди проходят мимо магазинов.", "Погода кажется спокойной."],
    "pt": ["O vídeo mostra uma rua à noite.", "Pessoas passam por uma fileira de lojas.", "O tempo parece calmo."],
    "ja": ["動画には夜の通りが映っています。", "人々が店の前を通り過ぎます。", "天気は穏やかに見えます。"],
    "ko": ["영상에는 밤거리가 보입니다.", "사람들이 가게 앞을 지나갑니다.", "날씨는 잔잔해 보입니다."],
}
PLACEHOLDER = " [placeholder: no content]"


def synth(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(language, response, expected label) triples."""
    rng = random.Random(seed)
    texts = load_texts()
    langs = list(taxonomy.LANGUAGES)
    subs = list(taxonomy.SUBCATEGORIES)
    out = []
    for _ in range(n):
        lang = rng.choice(langs)
        filler = " ".join(rng.choice(FILLER[lang]) for _ in range(rng.randint(0, 8)))
        r = rng.random()
        if r < 0.4:
            if rng.random() < 0.5:
                head = texts[lang].reference(rng.choice(("harmful", "hb")), rng.choice(subs))
            else:
                head = rng.choice(REFUSALS[lang])
            out.append((lang, f"{head} {filler}".strip(), "refused"))
        elif r < 0.7:
            out.append((lang, f"{rng.choice(COMPLIANCE[lang])}{PLACEHOLDER} {filler}".strip(), "complied"))
        else:
            out.append((lang, filler or rng.choice(FILLER[lang]), "unclear"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-rows", type=int, default=100_000)
    args = ap.parse_args()

    data = synth(args.n, args.seed)
    chars = [len(t) for _, t, _ in data]
    print(f"rules judge {rules_version()} | Python {platform.python_version()} | {platform.machine()}")
    print(f"{len(data):,} responses, 10 languages, length mean {statistics.mean(chars):.0f} chars "
          f"(min {min(chars)}, max {max(chars)}); labels: "
          + ", ".join(f"{k} {sum(1 for *_, e in data if e == k):,}" for k in ("refused", "complied", "unclear")))

    texts = [t for _, t, _ in data]
    wrong = [(lang, t, e, classify(t)[0]) for lang, t, e in data if classify(t)[0] != e]
    print(f"labels as expected: {len(data) - len(wrong):,} / {len(data):,}")
    for w in wrong[:5]:
        print("  MISMATCH", w)

    classify("warm-up")
    best = []
    for _ in range(args.repeats):
        t0 = clock()
        for t in texts:
            classify(t)
        best.append(clock() - t0)
    s = min(best)
    print(f"classify:         {s:6.2f} s  -> {len(texts) / s:10,.0f} responses/s (best of {args.repeats})")

    judge = RulesJudge()
    items = [JudgeInput(sample_id=str(i), condition="video", subset="HH", subcategory="scams_fraud", language=lang,
                        query="q", response=t) for i, (lang, t, _) in enumerate(data)]
    best = []
    for _ in range(args.repeats):
        t0 = clock()
        for i in range(0, len(items), 256):
            judge.judge(items[i:i + 256])
        best.append(clock() - t0)
    s = min(best)
    print(f"RulesJudge.judge: {s:6.2f} s  -> {len(items) / s:10,.0f} responses/s (best of {args.repeats}, Verdicts built)")

    by_kind = {}
    for kind in ("refused", "complied", "unclear"):
        sub = [t for t, (_, _, e) in zip(texts, data) if e == kind]
        t0 = clock()
        for t in sub:
            classify(t)
        by_kind[kind] = len(sub) / (clock() - t0)
    print("classify by kind: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in by_kind.items()))

    # Worst case: long answers with no marker at all (every character scanned), per language.
    rng = random.Random(args.seed + 1)
    rates = {}
    for lang in taxonomy.LANGUAGES:
        long = []
        for _ in range(2000):
            t = ""
            while len(t) < 2000:
                t += rng.choice(FILLER[lang]) + " "
            long.append(t)
        t0 = clock()
        for t in long:
            classify(t)
        rates[lang] = len(long) / (clock() - t0)
    print("worst case, 2,000-char answers without a marker: "
          + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()))

    if args.run_rows:
        with tempfile.TemporaryDirectory(prefix="vs-bench-judge-") as tmp:
            run = Path(tmp)
            subsets = ("HH", "SH", "HB", "SafeQ")
            with open(run / "responses.jsonl", "w", encoding="utf-8") as f:
                for i in range(args.run_rows):
                    lang, text, _ = data[i % len(data)]
                    f.write(json.dumps({"sample_id": f"s{i}", "condition": "video", "subset": subsets[i % 4],
                                        "category": "fraud_deception", "subcategory": "scams_fraud",
                                        "language": lang, "prompt": "q", "response": text, "error": None},
                                       ensure_ascii=False) + "\n")
            for what in ("first run", "cached rerun"):
                t0 = clock()
                s = judge_run(run, RulesJudge(), progress=False, batch_size=256)
                dt = clock() - t0
                print(f"judge_run ({what}): {args.run_rows:,} rows in {dt:5.2f} s -> {args.run_rows / dt:9,.0f} rows/s "
                      f"(newly judged {s.newly_judged:,}, cached {s.cached:,}, coverage {s.coverage:.3f})")


if __name__ == "__main__":
    main()
