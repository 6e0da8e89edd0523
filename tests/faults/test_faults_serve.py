"""Fault campaign, hostile input to ``videosafety serve`` (issue 13), fast cases: no key / wrong
key, bodies over the limit, too many frames, base64 that is not media, ``video_url`` /
``image_url`` pointing at file:// URLs, local paths (of files that exist) or remote URLs (a real
server on loopback that must see no request), malformed JSON, 200 concurrent requests: no crash,
bounded memory, a clear 4xx (or 503 past ``max_pending``). The long campaign:
``python benchmarks/bench_faults.py serve``."""

from __future__ import annotations

from netserve import (KEY, MAX_BODY, MAX_FRAMES, concurrent_flood, decoded_peak, hostile_cases, post,
                      serve_app, slow_body)


def test_hostile_requests_get_a_clear_4xx(tmp_path):
    with serve_app() as (srv, model, hits):
        cases = hostile_cases(tmp_path, hits.url)
        for name, (body, headers, status, code) in cases.items():
            got, resp = post(srv, body, headers)
            assert got == status, (name, got, resp)
            assert isinstance(resp, dict) and set(resp) == {"error"}, (name, resp)
            if code is not None:
                assert resp["error"]["code"] == code, (name, resp)
            assert KEY not in str(resp)
        assert hits.count == 0  # the remote URL was never fetched
        assert model.seen == []  # no hostile request reached the model
        # the server is still up and serves a good request
        got, resp = post(srv, None, None)
        assert got == 200 and resp["choices"][0]["message"]["content"] == "echo:hi"
    assert MAX_BODY > 0 and MAX_FRAMES > 0


def test_two_hundred_concurrent_requests():
    with serve_app(max_pending=16, delay=0.02) as (srv, model, _):
        figs = concurrent_flood(srv, model, n=200, timeout=120)
        assert figs["unanswered"] == 0, figs  # every request got an HTTP answer: no reset, no hang
        assert set(figs["statuses"]) <= {200, 401, 503}, figs
        assert figs["statuses"].get(401) == 40  # the wrong-key share, all refused
        assert figs["statuses"].get(503, 0) > 0 and figs["statuses"].get(200, 0) > 0  # bounded, not refused wholesale
        assert figs["max_in_model"] == 1
        got, _ = post(srv, None, None)
        assert got == 200


def test_decoded_frames_are_bounded():
    """12 requests whose small bodies (black PNGs) decode to 24 MiB of frames each, against a
    model that takes a while: at most max_decoding (2) of them hold decoded frames at once."""
    peak = decoded_peak(n=12, frames=8, size=1024, max_decoding=2)
    per_request = 8 * 1024 * 1024 * 3
    assert peak["answered"] == 12 and peak["statuses"] == {200: 12}, peak
    # two slots, each holding its frames and their stacked copy: 4 requests' worth, plus slack
    # (without the bound: all 12 at once, 14x)
    assert peak["peak_bytes"] < 6 * per_request, (peak["peak_bytes"] / per_request, peak)


def test_a_trickled_body_does_not_hold_a_slot():
    """A client that sends part of its body and stops: 408 after body_timeout, and its pending
    slot (here the only one) is free again."""
    with serve_app(max_pending=1, body_timeout=1.0) as (srv, model, _):
        status = slow_body(srv, wait=15)
        assert status.split(" ")[1:2] == ["408"], status
        got, resp = post(srv, None, None)
        assert got == 200, resp
