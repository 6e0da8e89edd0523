"""Stage-4 dataset files for verl and EasyR1 from VSB-mini's train split: size, write and load time.

    python benchmarks/bench_engine_files.py [--bench vsb-mini-folder] [--repeats 5]

Builds VSB-mini in a temporary folder unless --bench names one, writes the GRPO problems of the
train split (4,560 safety + the general free-form problems) in each engine's format (parquet,
and JSON lines for comparison), and times opening each file the way both engines do
(``datasets.load_dataset(<parquet|json>, data_files=..., split="train")``, a fresh cache every
time, so the Arrow conversion is included). Where verl imports (the ``verl`` extra), it also
times verl's own ``RLHFDataset`` (overlong-prompt filter off: that filter decodes every video)
and reading every row through it. Medians over --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import datasets

    from videosafety.data.vsb_mini import build_vsb_mini
    from videosafety.train import engines
    from videosafety.train.builders import build_grpo

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = build_vsb_mini(tmp / "vsb-mini", workers=2) if args.bench is None else args.bench / "manifest.jsonl"
        t0 = time.perf_counter()
        records = build_grpo(manifest)
        print(f"{len(records)} GRPO problems from {manifest} ({time.perf_counter() - t0:.2f} s to build)")
        for engine in engines.ENGINES:
            for suffix in (".parquet", ".json"):
                out = manifest.parent / f"grpo-{engine}{suffix}"
                t0 = time.perf_counter()
                written = engines.write_engine_file(records, out, engine, records_dir=manifest.parent)
                write_s = time.perf_counter() - t0
                kind = "parquet" if suffix == ".parquet" else "json"
                caches = iter(range(10 ** 6))
                load_s = _median_seconds(lambda: datasets.load_dataset(
                    kind, data_files=str(out), split="train", cache_dir=str(tmp / f"cache-{next(caches)}")),
                    args.repeats)
                print(f"{engine:7s} {suffix:8s} {written.rows} rows  {written.bytes / 1e6:6.2f} MB  "
                      f"write {write_s:5.2f} s  load (datasets, cold cache) {load_s:5.2f} s")
        try:
            from omegaconf import OmegaConf
            from verl.utils.dataset.rl_dataset import RLHFDataset
        except ImportError:
            print("verl not installed: RLHFDataset not timed")
            return
        from videosafety.models.tiny import train_tokenizer

        tok = train_tokenizer()

        class _Processor:  # RLHFDataset only asserts that one is there when a row has a video
            pass

        path = manifest.parent / "grpo-verl.parquet"
        caches = iter(range(10 ** 6))

        def open_verl():
            cfg = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp / f"verl-{next(caches)}")})
            return RLHFDataset(str(path), tok, cfg, processor=_Processor())

        init_s = _median_seconds(open_verl, args.repeats)
        ds = open_verl()
        rows_s = _median_seconds(lambda: [ds[i] for i in range(len(ds))], args.repeats)
        print(f"verl RLHFDataset: open {init_s:.2f} s, all {len(ds)} rows via __getitem__ {rows_s:.2f} s")


if __name__ == "__main__":
    main()
