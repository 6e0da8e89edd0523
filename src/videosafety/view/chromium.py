"""Headless Chromium driven over --remote-debugging-pipe (DevTools protocol, stdlib only: no
websocket client). The viewer's tests and benchmark use it to load the page, type keys, read the
DOM and take screenshots in a real browser."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    def __init__(self, chromium, profile, width=1280, height=1600):
        r1, w1 = os.pipe()  # we write -> chromium reads fd 3
        r2, w2 = os.pipe()  # chromium writes fd 4 -> we read
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "about:blank"]
        def fds():  # in the child: its fd 3 reads our commands, its fd 4 writes the replies
            a, b = os.dup(r1), os.dup(w2)
            os.dup2(a, 3); os.dup2(b, 4)
        self.proc = subprocess.Popen(flags, preexec_fn=fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HOME": str(profile)})
        os.close(r1); os.close(w2)
        self.w, self.r = os.fdopen(w1, "wb"), os.fdopen(r2, "rb")
        self.buf, self.n, self.session = b"", 0, None
        self.errors: list[str] = []  # exceptions the page threw (Runtime.exceptionThrown)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable"); self.call("Runtime.enable")

    def _read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.r.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe: " + self.proc.stderr.read().decode()[-2000:])
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        self.w.write(json.dumps(msg).encode() + b"\0"); self.w.flush()
        while True:
            m = self._read()
            if m.get("method") == "Runtime.exceptionThrown":
                self.errors.append(m["params"]["exceptionDetails"].get("exception", {}).get("description", str(m)))
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            # a DOM node comes back by value as {}: true stands for any object found
            v = self.eval(f"(() => {{ try {{ const v = ({expr}); return v && typeof v === 'object' ? true : v; }} "
                          "catch (e) { return null; } })()")
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(f"{expr}; page errors: {self.errors[-3:]}; url: {self.eval('location.href')}")

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def key(self, key):
        for t in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=t, key=key, text=key if t == "keyDown" and len(key) == 1 else "",
                      code=f"Key{key.upper()}" if len(key) == 1 else key,
                      windowsVirtualKeyCode=ord(key.upper()) if len(key) == 1 else 27)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        open(path, "wb").write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
