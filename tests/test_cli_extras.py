"""`videosafety --version` and shell completion."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from videosafety import __version__
from videosafety.cli import app

runner = CliRunner()
MAIN = "from videosafety.cli import main; main()"


def test_version_flag_and_command():
    for args in (["--version"], ["version"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and r.output.strip() == __version__


def _complete(words: str) -> list[str]:
    env = dict(os.environ, _VIDEOSAFETY_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=str(len(words.split()) - 1))
    p = subprocess.run([sys.executable, "-c", MAIN], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_shell_completion_completes_commands_and_options():
    assert _complete("videosafety tr") == ["train"]
    assert "--format" in _complete("videosafety train data --fo")
    # The shell is detected from the parent process: run under bash.
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "{MAIN}" --show-completion; exit $?'],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "_VIDEOSAFETY_COMPLETE=complete_bash" in p.stdout
