"""The habits that hold the shape of the code: ruff (lint and import order), mypy on the runtime and the
export, import-linter's layer contracts (pyproject.toml), and the size limits of files and functions.

mypy and import-linter find packages by walking folders, and ours are mapped (``bsrn_edge.runtime`` lives
in ``runtime/``), so both run over a tree of links laid out as the installed package is.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parent.parent
SETUP = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dir(pkg: str) -> Path:
    """The folder of an installed package: its own mapping, else its parent's mapping plus its name."""
    mapped = SETUP["package-dir"]
    parts = pkg.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in mapped:
            return ROOT / mapped[".".join(parts[:i])] / Path(*parts[i:])
    return ROOT.joinpath(*parts)


#: the product's packages (what is installed) by folder, and what ruff reads
PACKAGES = {pkg: _package_dir(pkg) for pkg in SETUP["packages"]}
LINTED = ["bsrn_edge", "runtime", "export", "apps", "benchmarks", "tests", "examples"]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 60


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: pip install -e '.[dev]'")
    return str(path)


@pytest.fixture(scope="module")
def package_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed package layout as links into the working tree (from [tool.setuptools] in pyproject.toml)."""
    out = tmp_path_factory.mktemp("tree")
    for pkg, src in PACKAGES.items():
        dst = out.joinpath(*pkg.split("."))
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            (dst / f.name).symlink_to(f)
        if (src / "py.typed").exists():
            shutil.copy(src / "py.typed", dst / "py.typed")
    return out


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_ruff_finds_nothing() -> None:
    proc = _run([_tool("ruff"), "check", "--no-cache", *LINTED], ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean_on_the_runtime_and_the_export(package_tree: Path, tmp_path: Path) -> None:
    proc = _run([_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                 "-p", "bsrn_edge.runtime", "-p", "bsrn_edge.export"], tmp_path, MYPYPATH=str(package_tree))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_layer_contracts_hold(package_tree: Path, tmp_path: Path) -> None:
    proc = _run([_tool("lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")], tmp_path,
                PYTHONPATH=str(package_tree))
    assert proc.returncode == 0 and "0 broken" in proc.stdout, proc.stdout + proc.stderr


def test_no_product_file_or_function_is_too_long() -> None:
    too_long = []
    for folder in PACKAGES.values():
        for path in folder.glob("*.py"):
            text = path.read_text()
            if text.count("\n") > MAX_FILE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {lines} lines")
    assert not too_long, f"over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function: {too_long}"
