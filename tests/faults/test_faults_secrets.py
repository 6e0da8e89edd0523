"""Fault campaign, secrets (issue 13), fast case: the networked commands (eval with an openai:
model, judge with llm:openai and rj:openai, serve with its key from the environment, and their
error paths: a server's 500 and 401 that echo the credentials they got, a URL with
user:password@) run with OPENAI_API_KEY set to a marker; no file they write, no stdout or stderr,
no server log holds the marker in any form (tests/faults/netsecrets.py). The long campaign adds
the judges' 401 and a dead server: ``python benchmarks/bench_faults.py secrets``."""

from __future__ import annotations

from netsecrets import secrets_campaign


def test_no_secret_in_any_output(tmp_path):
    from videosafety.data.vsb_mini import build_vsb_mini

    manifest = build_vsb_mini(tmp_path / "mini", workers=2)
    got = secrets_campaign(manifest, tmp_path / "work", limit=4, full=False)
    c = got["checks"]
    # the paths under test really ran
    assert c["eval ok rc"] == 0 and c["eval ok responses"] > 0 and c["judge ok rc"] == 0
    assert c["500 echoes served"] > 0  # a careless server echoed the Authorization header
    assert c["eval 401 rc"] == 1 and c["eval 401 errors"] == 4  # Basic credential echoed in a 401
    assert c["eval serve rc"] == 0 and c["serve statuses"] == [401, 401, 400]
    assert got["files"] > 10
    assert got["leaks"] == [], got["leaks"]
