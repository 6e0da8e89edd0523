"""Campaign modules of benchmarks/bench_faults.py: each has ``run(seed, workdir, trials=...) -> list[dict]``
with keys campaign, fault, trials, lost, duplicated, differing, hung, notes."""
