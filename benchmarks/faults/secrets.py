"""Secrets (issue 13): every networked command (eval with an openai: model, judge with llm:openai
and rj:openai, serve with its key from the environment, and the error paths: 500s and 401s that
echo the credentials, a user:password@ URL, a dead server) runs with OPENAI_API_KEY set to a
marker; every file written, every stdout / stderr and the servers' logs are searched for it
(a leak counts as differing).
``trials``: repetitions (each with its own folder). Scenario: tests/faults/netsecrets.py."""

from __future__ import annotations

from pathlib import Path

from faults._net import manifest

DEFAULT = 2


def run(seed: int, workdir: Path, trials: int = DEFAULT) -> list[dict]:
    from netsecrets import secrets_campaign

    mani = manifest(workdir)
    rows = []
    for t in range(trials):
        got = secrets_campaign(mani, workdir / f"trial-{t}", limit=6, full=True)
        c = got["checks"]
        ran = (c["eval ok responses"] > 0 and c["eval 401 errors"] > 0 and c["eval dead rc"] == 1
               and c["serve statuses"] == [401, 401, 400] and c["eval serve rc"] == 0)
        rows.append({"fault": f"secrets: {got['commands']} networked commands, trial {t}", "trials": got["commands"],
                     "lost": 0, "duplicated": 0, "differing": len(got["leaks"]) + int(not ran), "hung": 0,
                     "notes": f"{got['files']} files + every stdout/stderr and server log searched; leaks: "
                              f"{got['leaks'] or 'none'}; 500 echoes {c['500 echoes served']}, 401 rows "
                              f"{c['eval 401 errors']}"})
    return rows
