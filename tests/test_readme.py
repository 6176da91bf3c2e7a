"""The README's commands and API snippet are the ones that work."""

import contextlib
import io
import re

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


# What the snippet's comments promise, from facts outside the code under test: BSRN-S ×4 has 156,288
# parameters and needs an input of at least 15×15 (ESA's stride-2 conv and 7×7 stride-3 pool), both in
# ../shared/REFERENCE.md §1 and §5; a 320×180 frame at ×4 is 1280×720 (hand computation).
PROMISED = ["bsrn-s-x4 4 156288 15", str((180 * 4, 320 * 4, 3))]


def _python_snippet() -> str:
    return re.findall(r"```python\n(.*?)\n```", README, re.S)[0]


def test_snippet_comments_promise_the_independent_facts():
    claimed = re.findall(r"^print\(.*?\)\s*#\s*(.+?)\s*$", _python_snippet(), re.M)
    assert claimed == PROMISED


@needs_torch
def test_python_api_snippet_prints_what_its_comments_promise():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_python_snippet(), "README.md", "exec"), {})
    assert out.getvalue().splitlines() == PROMISED


def test_spandrel_snippet_prints_what_its_comments_promise(tmp_path):
    """The 'Coming from chaiNNer' snippet, run as a user would: in a folder holding net_g_BSRN-S.pth, in a
    fresh interpreter (install() changes spandrel's global registry)."""
    import shutil
    import subprocess
    import sys

    import pytest

    pytest.importorskip("spandrel")
    from bsrn_edge.checkpoint import resolve_checkpoint

    snippet = re.findall(r"```python\n(.*?)\n```", README, re.S)[1]
    assert "spandrel" in snippet
    shutil.copy(resolve_checkpoint("bsrn-s-x4"), tmp_path / "net_g_BSRN-S.pth")
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    claimed = re.findall(r"^print\(.*?\)\s*#\s*(.+?)\s*$", snippet, re.M)
    # independent facts: BSRN-S is ×4 with a 15-pixel minimum (REFERENCE.md §1, §5), a 10×12 input gives 40×48,
    # and it has no CCA layer (its blocks end in a learnt channel weight), so tiling is supported
    assert claimed == ["ImageModelDescriptor 4", "torch.Size([1, 3, 40, 48]) 15 supported True"]
    assert run.stdout.splitlines() == claimed
