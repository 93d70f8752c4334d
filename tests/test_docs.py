"""The README and docs/ name only files that exist: every relative link (and its #anchor), every
repository path (configs/..., sweeps/..., docs/..., grokkit/..., ...) and every config or sweep
file named in their tables. No file outside the repository is cited."""

import itertools
import re
from pathlib import Path

import pytest
from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TOP = ("configs", "sweeps", "docs", "examples", "benchmarks", "deploy", "docker", "grokkit")
TOP += ("tests",)
# a path as written in the text: configs/cpu/e3_alpha*.yaml, paper/e3_fig2b_alpha{1,10,100}.yaml
PATH = r"[\w./{},*<>-]*"
REPO_PATH = re.compile(rf"(?<![\w/.$-])((?:{'|'.join(TOP)})/{PATH})")
CONFIG_PATH = re.compile(r"(?<![\w/.-])((?:paper|cpu|related)/[\w.{},*-]+\.yaml)")
BARE_YAML = re.compile(r"`([\w.{},*-]+\.yaml)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
RUN_DIR_FILES = {"config.yaml"}  # a run directory's own files, named in the run-directory table


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def expand(path: str) -> list[str]:
    """Brace alternatives as a shell expands them: a{1,2}b -> a1b, a2b."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def is_placeholder(path: str) -> bool:
    """configs/..., sweeps/FILE.yaml, docs/figures/fig<panel>.png: a pattern, not a file."""
    pattern = "..." in path or "<" in path
    return pattern or any(re.fullmatch(r"[A-Z_]+(\.\w+)?", s) for s in path.split("/"))


def exists(base: Path, path: str) -> bool:
    return all(any(base.glob(p)) if "*" in p else (base / p).exists() for p in expand(path))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("md", DOCS, ids=_ids(DOCS))
def test_relative_links_and_anchors_exist(md):
    broken = []
    for target in LINK.findall(md.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (md.parent / path).resolve() if path else md
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert not broken, f"{md.name}: " + "; ".join(broken)


@pytest.mark.parametrize("md", DOCS, ids=_ids(DOCS))
def test_repository_paths_named_exist(md):
    text = md.read_text()
    missing = []
    for raw in REPO_PATH.findall(text):
        path = raw.rstrip(".,:;")
        if not is_placeholder(path) and not exists(REPO, path):
            missing.append(path)
    # config files named relative to configs/ (the configs tables), sweep files by name
    for path in CONFIG_PATH.findall(text):
        if not exists(REPO / "configs", path):
            missing.append(f"configs/{path}")
    for name in BARE_YAML.findall(text):
        if name in RUN_DIR_FILES or is_placeholder(name):
            continue
        if not any(exists(REPO / top, f"**/{name}") for top in ("configs", "sweeps")):
            missing.append(name)
    assert not missing, f"{md.name} names files that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("md", DOCS, ids=_ids(DOCS))
def test_no_file_outside_the_repository_is_cited(md):
    text = md.read_text()
    assert not re.search(r"\b(PAPER|DESIGN)\.md\b", text)
    assert not re.search(r"\]\((?:\.\./){2,}|\]\(/", text), "a link leaves the repository"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    pages = [str(p.relative_to(REPO)) for p in DOCS[1:]]
    unlinked = [page for page in pages if f"]({page}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The helpers themselves: expansion, placeholders, globs and anchors."""
    assert expand("a{1,10}b") == ["a1b", "a10b"]
    assert is_placeholder("sweeps/FILE.yaml") and is_placeholder("configs/...")
    assert not is_placeholder("configs/quickstart.yaml")
    assert exists(REPO, "configs/cpu/e3_alpha*.yaml") and not exists(REPO, "configs/nope*.yaml")
    assert slug("Figures: the paper's panels at its own scale") == (
        "figures-the-papers-panels-at-its-own-scale"
    )
    assert slug("W&B") == "wb"
