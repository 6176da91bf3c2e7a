"""The README's commands and API snippet are the ones that work."""

import re
from pathlib import Path

import pytest

from conftest import ROOT, needs_torch

README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, re.S)


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    blocks = _bash_blocks()
    assert len(blocks) >= 2
    assert "bsrn-demo" in blocks[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci


def test_console_scripts_exist():
    text = (ROOT / "pyproject.toml").read_text()
    for name, target in re.findall(r'^(bsrn-[a-z]+) = "([\w.]+:\w+)"', text, re.M):
        mod, func = target.split(":")
        module = __import__(mod, fromlist=[func])
        assert callable(getattr(module, func)), name


@needs_torch
def test_python_api_snippet_runs():
    snippet = re.findall(r"```python\n(.*?)\n```", README, re.S)[0]
    exec(compile(snippet, "README.md", "exec"), {})
