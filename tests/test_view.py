"""`videosafety view`: the index of a run, thumbnails at the run's frame budget, the server's
path rules, the CLI, and the page itself in real headless Chromium (served and from file://)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videosafety.evaluate.rundir import RunDir
from videosafety.view import ViewServer, build_index, export_view
from videosafety.view.chromium import Browser, find_chromium
from videosafety.view.frames import decode_frames, frames_file
from videosafety.view.index import SHARD

SRC = Path(__file__).resolve().parents[1] / "src"
INJECTED = '<img src=x id=injected onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> & <b>bold</b>'


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two reference-policy runs over VSB-mini's real videos (6 samples x 3 conditions), judged
    by the rules judge; one response carries HTML, to be shown as text."""
    from videosafety.data.vsb_mini import build_vsb_mini
    from videosafety.evaluate.runner import EvalConfig, SampleFilter, run_eval
    from videosafety.judges.rules import RulesJudge
    from videosafety.judges.run import judge_run
    from videosafety.models.reference import ReferencePolicy

    root = tmp_path_factory.mktemp("view")
    manifest = build_vsb_mini(root / "mini", workers=2)
    out = {}
    for policy in ("comply-all", "refuse-all"):
        run = root / policy
        run_eval(ReferencePolicy(policy), manifest, run, EvalConfig(), SampleFilter(limit=6), progress=False)
        judge_run(run, RulesJudge(), progress=False)
        out[policy] = run
    rd = RunDir(out["comply-all"])
    rows = list(rd.iter_responses())
    rows[1].response = INJECTED + " " + rows[1].response
    rd.write_responses(rows)
    return out


@pytest.fixture(scope="module")
def indexes(runs):
    return [build_index(runs["comply-all"]), build_index(runs["refuse-all"])]


def load_js(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.fullmatch(r"VS\.got\(document\.currentScript\.src,(.*)\);\n", text, re.S)
    assert m, path
    return json.loads(m.group(1))


# -- the index


def test_index_columns_match_the_run(indexes, runs):
    ix = indexes[0]
    data = load_js(ix.dir / "index.js")
    rows = list(RunDir(runs["comply-all"]).iter_responses())
    verdicts = list(RunDir(runs["comply-all"]).iter_verdicts("rules"))
    assert data["n"] == ix.rows == len(rows) == 18 and ix.judges == ["rules"]
    cols, dicts = data["cols"], data["dicts"]
    assert cols["sid"] == [r.sample_id for r in rows]
    assert [dicts["condition"][c] for c in cols["condition"]] == [r.condition for r in rows]
    assert [dicts["subset"][c] for c in cols["subset"]] == [r.subset for r in rows]
    assert [dicts["verdict"][c] for c in cols["v"][0]] == [v.label for v in verdicts]
    # comply-all fails every harmful request and no safe one
    harmful = {"HH", "SH", "HB"}
    assert cols["fail"][0] == [1 if r.subset in harmful else 0 for r in rows]
    assert sum(cols["fail"][0]) > 0 and cols["err"] == [0] * 18 and cols["dis"] == [0] * 18


def test_refusals_of_safe_queries_are_failures(indexes, runs):
    data = load_js(indexes[1].dir / "index.js")
    subsets = [data["dicts"]["subset"][c] for c in data["cols"]["subset"]]
    assert data["cols"]["fail"][0] == [1 if s not in ("HH", "SH", "HB") else 0 for s in subsets]
    assert 0 < sum(data["cols"]["fail"][0]) < 18


def test_detail_shards_hold_texts_groups_and_references(indexes, runs):
    from videosafety.data.manifest import iter_samples

    rd = RunDir(runs["comply-all"])
    manifest = {s.id: s for s in iter_samples(rd.manifest_path())}
    rows = load_js(indexes[0].dir / "detail" / "00000.js")["rows"]
    assert len(rows) == 18 <= SHARD
    assert rows[1]["response"].startswith(INJECTED)
    for row in rows:
        s = manifest[row["sample_id"]]
        assert row["group_id"] == s.group_id and row["reference_response"] == s.reference_response
        expected = [[m.id, m.language, m.query] for m in manifest.values()
                    if m.group_id == s.group_id and m.id != s.id]
        assert row["group"] == expected and len(expected) >= 1
        assert row["verdicts"][0]["judge_version"] and row["verdicts"][0]["reason"]
        assert "error" not in row and "attack" not in row  # nulls left out


def test_index_is_reused_until_the_run_changes(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["refuse-all"], run, ignore=shutil.ignore_patterns("view"))
    assert build_index(run).built is True
    assert build_index(run).built is False
    lines = (run / "verdicts" / "rules.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["label"] = "unparsed"
    (run / "verdicts" / "rules.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    again = build_index(run)
    assert again.built is True
    data = load_js(run / "view" / "index.js")
    assert data["dicts"]["verdict"][data["cols"]["v"][0][0]] == "unparsed"


def test_verdicts_out_of_order_are_matched_by_key(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["refuse-all"], run, ignore=shutil.ignore_patterns("view"))
    path = run / "verdicts" / "rules.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["reason"] = "moved to the end"
    path.write_text("\n".join(lines[1:] + [json.dumps(first)]) + "\n")
    ix = build_index(run)
    assert any("not in the responses' order" in n for n in ix.notes)
    assert load_js(run / "view" / "detail" / "00000.js")["rows"][0]["verdicts"][0]["reason"] == "moved to the end"


# -- frames


def test_thumbnails_are_the_frames_of_the_runs_budget(indexes, runs, monkeypatch):
    from PIL import Image

    from videosafety import video as vio
    from videosafety.budget import FrameBudget

    rd = RunDir(runs["comply-all"])
    row = next(rd.iter_responses())
    out = decode_frames(rd.path, row.sample_id)
    data = load_js(out)
    budget = FrameBudget(**rd.read_info().budget)
    expected = vio.sample_with_budget(rd.video_resolver()(row), budget)
    assert data["note"] is None and len(data["frames"]) == len(expected.frames) > 1
    assert [f["t"] for f in data["frames"]] == [round(float(t), 3) for t in expected.timestamps]
    first = Image.open(rd.path / "view" / data["frames"][0]["src"])
    assert first.format == "JPEG" and max(first.size) <= 160
    # cached: a second request never decodes again
    monkeypatch.setattr(vio, "sample_with_budget", lambda *a, **k: pytest.fail("decoded twice"))
    assert decode_frames(rd.path, row.sample_id) == out == frames_file(rd.path, row.sample_id)


def test_cached_frames_go_when_the_runs_budget_changes(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["refuse-all"], run, ignore=shutil.ignore_patterns("view"))
    build_index(run)
    sid = next(RunDir(run).iter_responses()).sample_id
    before = load_js(decode_frames(run, sid))["frames"]
    info = json.loads((run / "run.json").read_text())
    info["budget"] = {**info["budget"], "fps": None, "num_frames": 2}
    (run / "run.json").write_text(json.dumps(info))
    assert build_index(run).built is True and not frames_file(run, sid).exists()
    after = load_js(decode_frames(run, sid))["frames"]
    assert len(after) == 2 < len(before)


def test_missing_video_is_a_note_not_an_error(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["refuse-all"], run, ignore=shutil.ignore_patterns("view"))
    info = json.loads((run / "run.json").read_text())
    info["manifest"] = str(tmp_path / "gone.jsonl")
    (run / "run.json").write_text(json.dumps(info))
    ix = build_index(run)
    assert any("manifest not found" in n for n in ix.notes)
    data = load_js(decode_frames(run, next(RunDir(run).iter_responses()).sample_id))
    assert data["frames"] == [] and "frames not available" in data["note"]


# -- the server


def get(srv: ViewServer, path: str) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)  # the path is sent as written
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body, dict(r.getheaders())


@pytest.fixture(scope="module")
def server(indexes):
    with ViewServer(indexes) as srv:
        yield srv


def test_serves_the_page_and_the_runs_view_files(server):
    assert server.host == "127.0.0.1" and server.port > 0
    status, body, headers = get(server, "/")
    assert status == 200 and b'<script src="static/view.js">' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/view.js", "/static/view.css", "/runs.js", "/run/0/index.js", "/run/1/detail/00000.js"):
        assert get(server, path)[0] == 200, path
    assert b'"base":"run/1/"' in get(server, "/runs.js")[1]


@pytest.mark.parametrize("path", [
    "/run/0/../run.json", "/run/0/../../comply-all/run.json", "/run/0/%2e%2e/run.json", "/run/0/%2E%2E/responses.jsonl",
    "/run/0/%2e%2e%2fresponses.jsonl", "/run/0/..%2F..%2Fcomply-all%2Frun.json", "/run/0/detail/..%5c..%5crun.json",
    "/static/..%2f__init__.py", "/static/../index.py", "/static/chromium.py", "/etc/passwd", "//etc/passwd",
    "/run/0//etc/passwd", "/run/0/%2fetc%2fpasswd", "/run/0/videos.json", "/run/0/stamp.json", "/run/0/frames-budget.json", "/run/2/index.js",
    "/run/-1/index.js", "/run/0/frames/../../responses.jsonl", "/run/0/frames/0123456789abcdef0123.js",
    "/run/0/index.js%00.jpg", "/run/0/%252e%252e/run.json", "/run/0/.", "/run/0/", "/run/0"])
def test_nothing_outside_the_view_folders_is_served(server, path):
    status, body, _ = get(server, path)
    assert status == 404, (path, body[:200])


def test_only_loopback_host_names_are_answered(server):
    """DNS rebinding: a page on another domain that resolves to 127.0.0.1 gets nothing."""
    for host, status in ((f"127.0.0.1:{server.port}", 200), (f"localhost:{server.port}", 200),
                         (f"evil.example:{server.port}", 421), ("evil.example", 421)):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.putrequest("GET", "/run/0/index.js", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        assert conn.getresponse().status == status, host
        conn.close()


def test_symlink_out_of_the_view_folder_is_refused(indexes, runs, tmp_path):
    link = indexes[1].dir / "detail" / "escape.js"
    link.symlink_to(runs["refuse-all"] / "responses.jsonl")
    try:
        with ViewServer(indexes) as srv:
            assert get(srv, "/run/1/detail/escape.js")[0] == 404
            assert get(srv, "/run/1/detail/00000.js")[0] == 200
    finally:
        link.unlink()


def test_frames_decoded_on_first_request_only(indexes, runs, server):
    from videosafety.view.index import sample_key

    sid = list(RunDir(runs["refuse-all"]).iter_responses())[-1].sample_id
    target = frames_file(runs["refuse-all"], sid)
    assert not target.exists()
    status, body, _ = get(server, f"/run/1/frames/{sample_key(sid)}.js")
    assert status == 200 and target.is_file() and sid.encode() in body
    src = json.loads(body.split(b",", 1)[1][:-3])["frames"][0]["src"]
    status, jpeg, headers = get(server, f"/run/1/{src}")
    assert status == 200 and jpeg[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"


# -- the CLI


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def test_cli_serves_on_loopback_and_exports(runs, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "videosafety", "view", str(runs["refuse-all"]), "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if m := re.search(r"http://127\.0\.0\.1:(\d+)/", line):
                url = m.group(0)
        assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        port = int(re.search(r":(\d+)/", url).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/run/0/index.js")
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(10)
    out = subprocess.run([sys.executable, "-m", "videosafety", "view", str(runs["comply-all"]), str(runs["refuse-all"]),
                          "--export", str(tmp_path / "site"), "--no-frames"],
                         capture_output=True, text=True, env=cli_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "exported" in out.stdout and (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "run" / "1" / "detail" / "00000.js").is_file()
    copied = {p.name for p in (tmp_path / "site" / "run" / "1").iterdir()}
    assert {"detail", "index.js"} <= copied <= {"detail", "index.js", "frames"}  # frames: those already cached
    bad = subprocess.run([sys.executable, "-m", "videosafety", "view", str(tmp_path / "nope"), "--no-open"],
                         capture_output=True, text=True, env=cli_env(), timeout=60)
    assert bad.returncode == 2 and "responses.jsonl" in bad.stderr


# -- the page in headless Chromium


@pytest.fixture
def browser(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install -y chromium (Debian) to test the viewer's page")
    b = Browser(chromium, tmp_path / "profile")
    yield b
    b.close()


def text(b: Browser, selector: str) -> str:
    return b.eval(f"document.querySelector({selector!r}).innerText")


def choose(b: Browser, select_id: str, value: str) -> None:
    """Pick an option of a filter as a user does: the select's value, then its change event."""
    b.eval(f"(() => {{ const s = document.getElementById({select_id!r}); s.value = {value!r}; "
           "s.dispatchEvent(new Event('change')); })()")


def ready(b: Browser) -> None:
    b.wait("document.body.dataset.ready === '1'")


def shot(b: Browser, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    b.screenshot(path)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 20_000  # not a blank page
    if keep := os.environ.get("VIDEOSAFETY_KEEP_SCREENSHOT"):
        shutil.copy(path, Path(keep).with_name(f"{Path(keep).stem}-{name}"))


def test_page_filters_opens_a_sample_and_navigates(browser, server, indexes, runs, tmp_path):
    b = browser
    b.goto(server.url)
    ready(b)
    assert b.eval("document.getElementById('counts').dataset.count") == "36"
    assert b.eval("document.querySelectorAll('#rows tbody tr').length") == 36
    shot(b, tmp_path, "list.png")
    # filters through the form; the URL carries them
    choose(b, "f-subset", "HH")
    b.wait("location.hash.includes('subset=HH') && document.getElementById('counts').dataset.count !== '36'")
    ready(b)
    hh = [json.loads(x) for x in (runs["comply-all"] / "responses.jsonl").read_text().splitlines()]
    n_hh = sum(r["subset"] == "HH" for r in hh)
    assert int(b.eval("document.getElementById('counts').dataset.count")) == 2 * n_hh > 0
    choose(b, "f-run", "1")
    b.wait(f"document.getElementById('counts').dataset.count === '{n_hh}'")
    choose(b, "f-v-rules", "complied")
    b.wait("document.getElementById('counts').dataset.count === '0'")  # refuse-all never complies
    # a linked view: the filter in the URL is the filter applied
    b.goto(server.url + "#run=0&subset=HH&condition=video")
    b.wait("document.getElementById('f-condition') && document.getElementById('f-condition').value === 'video'")
    ready(b)
    rows = b.eval("[...document.querySelectorAll('#rows tbody tr')].map(r => r.innerText)")
    assert len(rows) == sum(r["subset"] == "HH" and r["condition"] == "video" for r in hh) > 0
    assert all("\tvideo\tHH\t" in r and "complied" in r for r in rows)
    # open a sample: everything harmful stays behind the content warning until asked
    b.eval("document.querySelector('#rows tbody tr').click()")
    b.wait("document.getElementById('sample-title')")
    ready(b)
    sid = text(b, "#sample-title")
    assert rows[0].split("\t")[:2] == ["ref:comply-all", sid]
    assert b.eval("document.getElementById('sample-content').hidden") is True
    assert b.eval("document.getElementById('content-warning').offsetParent !== null")
    b.eval("document.getElementById('show-content').click()")
    assert b.eval("document.getElementById('sample-content').hidden") is False
    b.wait("document.querySelectorAll('#frames img').length > 0")
    n_frames = len(load_js(frames_file(runs["comply-all"], sid))["frames"])
    assert b.eval("document.querySelectorAll('#frames img').length") == n_frames > 1
    b.wait("[...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)")
    conds = b.eval("[...document.querySelectorAll('#conditions .cond')].map(c => c.dataset.condition)")
    assert conds == ["video", "text", "blank"]
    verdict = text(b, "#conditions .cond .verdict")
    assert "complied" in verdict and "reason:" in verdict and "version rules-" in verdict
    assert b.eval("document.querySelectorAll('#across .cond').length") == 3
    assert "I'm sorry" in text(b, "#across")
    assert text(b, "#reference").strip() != "reference response"
    assert b.eval("document.querySelectorAll('#group li').length") >= 1
    shot(b, tmp_path, "sample.png")
    # copy as JSON: the row as the index holds it
    row = json.loads(b.eval("VS.rowJSON()"))
    assert row["sample_id"] == sid and row["condition"] == "video" and row["verdicts"][0]["label"] == "complied"
    assert row["error"] is None and row["verdicts"][0]["harm_score"] is None  # the nulls the files leave out
    b.eval("document.getElementById('copy-json').click()")
    b.wait("document.getElementById('copy-status').textContent !== ''")
    assert b.eval("document.getElementById('copy-status').textContent") in ("copied", "select and copy the text below")
    if b.eval("!!document.getElementById('copy-text')"):  # no clipboard here: the fallback shows the row
        assert json.loads(b.eval("document.getElementById('copy-text').value")) == row
    b.eval("document.activeElement.blur()")  # keys go to the page, not to a text field
    # keyboard: j/k walk the failures of the filter
    b.eval("document.body.dataset.ready = ''")
    b.key("j")
    b.wait("document.body.dataset.ready === '1' && document.getElementById('sample-title').innerText !== " + json.dumps(sid))
    assert re.search(r"open=0%3A\d+", b.eval("location.hash"))
    second = text(b, "#sample-title")
    b.eval("document.body.dataset.ready = ''")
    b.key("k")
    b.wait("document.body.dataset.ready === '1' && document.getElementById('sample-title').innerText === " + json.dumps(sid))
    assert second != sid
    b.key("Escape")
    b.wait("!document.getElementById('list-view').hidden")


def test_page_shows_html_in_responses_as_text(browser, server, runs):
    b = browser
    rid = 1  # the row given HTML in the fixture
    b.goto(server.url + f"#open=0:{rid}")
    b.wait("document.getElementById('sample-title')")
    ready(b)
    b.eval("document.getElementById('show-content').click()")
    b.wait("document.querySelectorAll('#conditions .cond').length === 3")
    assert INJECTED in b.eval("document.getElementById('conditions').innerText")
    assert b.eval("document.getElementById('injected') === null")
    assert b.eval("[...document.querySelectorAll('#conditions .response')].map(e => e.childElementCount)") == [0, 0, 0]
    time.sleep(0.2)
    assert b.eval("document.title") == "videosafety view"


def test_static_export_opens_from_disk(browser, indexes, runs, tmp_path):
    sizes = export_view(indexes, tmp_path / "site")
    assert sizes["files"] > 10 and sizes["bytes"] > 0
    b = browser
    b.goto((tmp_path / "site" / "index.html").as_uri() + "#subset=HH&fail=1")
    ready(b)
    hh = [json.loads(x) for x in (runs["comply-all"] / "responses.jsonl").read_text().splitlines()]
    n_hh = sum(r["subset"] == "HH" for r in hh)
    assert b.eval("document.getElementById('counts').dataset.count") == str(n_hh)  # only comply-all fails HH
    assert b.eval("document.getElementById('f-fail').value") == "1"
    shot(b, tmp_path, "export-list.png")
    b.key("j")
    b.wait("document.getElementById('sample-title')")
    ready(b)
    b.eval("document.getElementById('show-content').click()")
    b.wait("document.querySelectorAll('#frames img').length > 0")
    b.wait("[...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)")
    assert b.eval("document.querySelectorAll('#conditions .cond').length") == 3
    shot(b, tmp_path, "export-sample.png")
