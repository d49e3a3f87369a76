"""No tracked file records where something lay on one machine: a home folder, the root user's
home, a work, scratch, mount or temporary folder. Results, logs and docs are read on other
machines; they name paths relative to the project (or a placeholder such as path/to/conll2003)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import load_script

from jaxbackprop.provenance import portable_argv, portable_path

ROOT = Path(__file__).resolve().parents[1]
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".npz", ".npy", ".gz", ".zip", ".pkl"}

# A path starts at a "/" that no path character precedes (so a relative path or a URL that merely
# contains such a folder name does not count). The folder names are joined at run time, so this
# file holds no such path itself.
_START = r"(?<![\w.~/\\-])"
HOMES = ("home", "Users")
MACHINE_FOLDERS = ("root", "work", "tmp", "scratch", "mnt")
PATTERNS = [
    re.compile(_START + "/(?:" + "|".join(HOMES) + r")/[^/\s]+"),  # someone's home folder (Linux, macOS)
    re.compile(_START + "/(?:" + "|".join(MACHINE_FOLDERS) + ")/"),  # root's home, work, temp, scratch, mounts
    re.compile(_START + "/(?:" + "|".join(("var/" + "tmp", "private/" + "var")) + ")/"),  # more temp folders
    re.compile(r"\b[A-Za-z]:[\\/]+(?:Users|Documents and Settings)[\\/]", re.IGNORECASE),  # a Windows home
]


def absolute(*parts: str) -> str:
    """An absolute path from its folder names, e.g. absolute("srv", "x") == "/srv/x"."""
    return "".join("/" + part for part in parts)


def tracked_files() -> list:
    """Tracked files of this checkout, or a skip where there is no git or no repository."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (no .git)")
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"git ls-files failed: {done.stderr.decode(errors='replace').strip()}")
    return [ROOT / name for name in done.stdout.decode().split("\0") if name]


def text_of(path: Path):
    """The file's text, or None for a binary (by suffix, or a NUL byte) or a missing file."""
    if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
        return None
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace")


def absolute_paths(text: str) -> list:
    """(line number, matched text) of every machine-specific absolute path in ``text``."""
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1) for p in PATTERNS for m in p.finditer(line)]


def test_patterns_catch_machine_paths_and_spare_relative_ones():
    home, work, temp = absolute("home", "alice", "data"), absolute("work", "project", "corpus"), absolute("tmp", "run")
    win = "C:" + "\\" + "Users" + "\\" + "bob" + "\\" + "glove.txt"
    for text in (f"--conll {home}", f'"command": "{work}"', f"files in {temp}", f"({work})", f"--out={temp}", win):
        assert absolute_paths(text), text
    for text in (
        "--conll path/to/conll2003",
        "experiments" + absolute("tmp", "x"),
        "runs/conll_manual",
        "https://example.org" + absolute("home", "page"),
        "a" + absolute("root", "b"),
    ):
        assert not absolute_paths(text), text


def test_no_tracked_file_holds_an_absolute_path():
    found = []
    files = tracked_files()
    for path in files:
        text = text_of(path)
        if text is not None:
            found += [f"{path.relative_to(ROOT).as_posix()}:{n}: {hit}" for n, hit in absolute_paths(text)]
    assert files, "git ls-files listed nothing"
    assert not found, "absolute paths of one machine (use project-relative paths or path/to/...):\n" + "\n".join(found)


def test_result_writers_record_paths_relative_to_the_project_or_by_name(tmp_path):
    """What experiments, sweeps and benchmarks write: the project-relative path or the name alone."""
    outside = tmp_path / "conll2003"
    outside.mkdir()
    inside = ROOT / "experiments" / "results"
    assert portable_path(outside) == "conll2003" and portable_path(inside) == "experiments/results"
    argv = [
        str(ROOT / "experiments" / "e04_nonlinearities.py"),
        "--conll",
        str(outside),
        f"--out={inside}",
        "--lr",
        "0.1",
    ]
    assert portable_argv(argv) == [
        "experiments/e04_nonlinearities.py",
        "--conll",
        "conll2003",
        "--out=experiments/results",
        "--lr",
        "0.1",
    ]
    # an experiment's recorded command (experiments/common.py), as result.json and section.md hold it
    common = load_script(ROOT / "experiments" / "common.py", "experiments_common")
    args = common.parse_args(
        "e04_nonlinearities",
        "E04.",
        ["--conll", str(outside), "--embeddings", str(tmp_path / "glove.txt"), "--out", str(tmp_path / "o")],
        real_data=True,
    )
    assert args.command == "python experiments/e04_nonlinearities.py --conll conll2003 --embeddings glove.txt --out o"
