"""Headless Chromium driven over --remote-debugging-pipe (DevTools protocol, stdlib only: no
websocket client). The viewer's tests and benchmark use it to load the page, type keys, read the
DOM and take screenshots in a real browser."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One headless Chromium with one page; ``call`` sends a DevTools command to the page."""

    def __init__(self, chromium: str, profile: str | os.PathLike, width: int = 1280, height: int = 1600,
                 timeout: float = 60.0):
        os.makedirs(profile, exist_ok=True)
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()  # Chromium reads commands on its fd 3
        from_chrome_r, from_chrome_w = os.pipe()  # and writes replies and events on its fd 4
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "about:blank"]

        def child_fds() -> None:  # dup first: the pipes' own numbers may be 3 or 4
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.log_path = os.path.join(profile, "chromium.log")  # a file, so a chatty browser never blocks on it
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(flags, preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env={**os.environ, "HOME": str(profile)})
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.w = os.fdopen(to_chrome_w, "wb")
        self.r = from_chrome_r
        self.buf, self.n, self.session = b"", 0, None
        self.errors: list[str] = []  # exceptions the page threw (Runtime.exceptionThrown)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _log_tail(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def _read(self) -> dict:
        end = time.monotonic() + self.timeout
        while b"\0" not in self.buf:
            if not select.select([self.r], [], [], max(0.0, end - time.monotonic()))[0]:
                raise TimeoutError(f"chromium did not answer in {self.timeout} s: {self._log_tail()}")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe: " + self._log_tail())
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, **params) -> dict:
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):  # browser-wide, not the page's
            msg["sessionId"] = self.session
        self.w.write(json.dumps(msg).encode() + b"\0")
        self.w.flush()
        while True:
            m = self._read()
            if m.get("method") == "Runtime.exceptionThrown":
                self.errors.append(m["params"]["exceptionDetails"].get("exception", {}).get("description", str(m)))
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def eval(self, expr: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 20.0):
        """Poll until the expression is truthy; its value (True for an object)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            # a DOM node comes back by value as {}: true stands for any object found
            v = self.eval(f"(() => {{ try {{ const v = ({expr}); return v && typeof v === 'object' ? true : v; }} "
                          "catch (e) { return null; } })()")
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(f"{expr}; page errors: {self.errors[-3:]}; url: {self.eval('location.href')}")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def key(self, key: str) -> None:
        """Press and release a key: one character, or "Escape"."""
        code, vk = ("Escape", 27) if key == "Escape" else (f"Key{key.upper()}", ord(key.upper()))
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, windowsVirtualKeyCode=vk,
                  text=key if len(key) == 1 else "")
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk)

    def screenshot(self, path: str | os.PathLike) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass  # already gone: wait() below reaps it
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.w.close()
        os.close(self.r)
