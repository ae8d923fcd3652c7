"""The README stays a front page: short, its layout table complete, its links alive, its test command CI's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE = ROOT / "vggedge"
MAX_LINES = 250
DOCS_INDEX = ["weights", "precision", "cpu", "gpu", "jetson", "stream", "batch", "errors"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def layout_names(text: str) -> set[str]:
    """First cells of the layout table: rows whose first cell is one backticked module or package path."""
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.MULTILINE)}


def package_modules() -> list[str]:
    """Every module and package of vggedge, as the layout table names them (relative to vggedge/)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py":
            names.append(f"{rel.parent.as_posix()}/" if rel.parent != Path(".") else "vggedge/")
        else:
            names.append(rel.as_posix())
    return names


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move reference material into docs/"


def test_layout_table_names_every_module() -> None:
    listed = layout_names(README.read_text())
    modules = package_modules()
    assert len(modules) > 20  # the walk found the package
    missing = [m for m in modules if m not in listed]
    assert not missing, f"README layout table lacks a row for: {', '.join(missing)}"


def test_layout_table_names_only_modules_that_exist() -> None:
    stale = sorted(set(layout_names(README.read_text())) - set(package_modules()))
    assert not stale, f"README layout table has rows for modules that no longer exist: {', '.join(stale)}"


def test_docs_index_covers_each_topic() -> None:
    text = README.read_text()
    for topic in DOCS_INDEX:
        assert f"](docs/{topic}.md)" in text, f"README's docs index lacks docs/{topic}.md"


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                        for p in (ROOT / "docs").glob("*.md")),
                                  "benchmarks/README.md"])
def test_local_links_exist(page: str) -> None:
    source = ROOT / page
    targets = [t for t in LINK.findall(source.read_text()) if not re.match(r"[a-z]+:", t)]
    assert targets or page != "README.md"
    broken = [t for t in targets if not (source.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page}: links to missing files: {broken}"


def readme_test_command() -> str:
    """The bash block under "Set up and run the tests"."""
    section = README.read_text().split("Set up and run the tests", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1).strip()


def test_readme_test_command_is_what_ci_runs_last() -> None:
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert readme_test_command() == ci_lines[-1].strip()
    assert "pytest" in readme_test_command()
