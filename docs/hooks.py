"""MkDocs hooks that make the course site (mkdocs.yml) out of the repository as it is:

- the README is the home page, notebooks/README.md the course's index, docs/*.md the guides;
- the seven notebooks are executed at build time (fast mode unless NNLAB_DOCS_FULL=1), each in
  its own folder of the work folder beside the site, and rendered by mkdocs-jupyter with an
  "Open in Colab" badge; a failing cell fails the build;
- the lecture report, `python -m nnlab.lecture all --fast`, is generated into the work folder
  and published with every figure;
- the API reference is one page per package, from the docstrings (mkdocstrings);
- a relative link to another page becomes that page's link, a link to any other file of the
  repository a link to it on GitHub; a link to nothing stays and fails the strict build.

Nothing is written into the repository: the work folder is `<site_dir>-work`.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The API reference: a page per package or module, in this order.
REFERENCE = {
    "nnlab.nn": ["nnlab.nn.networks", "nnlab.nn.activations", "nnlab.nn.init", "nnlab.nn.losses"],
    "nnlab.exercises": ["nnlab.exercises", "nnlab.exercises.checking", "nnlab.exercises.teacher"],
    "nnlab.lecture": ["nnlab.lecture", "nnlab.lecture.registry", "nnlab.lecture.study"],
    "nnlab.tasks": ["nnlab.tasks"],
    "nnlab.core": ["nnlab.core.registry", "nnlab.core.errors"],
}
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>')

# Site path (src_uri) → repository path of each page made from a repository file.
SOURCES: dict[str, str] = {}
_state: dict[str, Any] = {}


def repository() -> str:
    """The GitHub repository's URL: pyproject.toml's [project.urls] Repository (read as text:
    tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^Repository = "(https://github\.com/[^"]+)"$', text, re.MULTILINE)
    if found is None:
        raise PluginError("pyproject.toml has no [project.urls] Repository on GitHub")
    return found[1].rstrip("/")


def colab_url(notebook: str) -> str:
    """Where Colab opens a notebook of the repository's main branch."""
    return (
        repository().replace("https://github.com/", "https://colab.research.google.com/github/")
        + f"/blob/main/notebooks/{notebook}"
    )


def on_config(config: Any) -> Any:
    # No repo_url: Material would ask GitHub's API for the repository's stars on every visit
    # (the site works offline, and the browser check allows no failed request).
    work = Path(config["site_dir"]).resolve().with_name(Path(config["site_dir"]).name + "-work")
    _state["work"] = work
    return config


def _execute(notebook: Path, work: Path) -> Path:
    """Runs a copy of the notebook top to bottom in its own folder of `work`; returns the
    executed copy (stored outputs and all)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    folder = work / "runs" / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        raise PluginError(f"{notebook.name}: a cell failed\n{error}") from None
    target = work / "notebooks" / notebook.name
    nbformat.write(nb, target)
    return target


def _lecture(work: Path) -> None:
    """The lecture report with every figure: `python -m nnlab.lecture all --fast`."""
    out = work / "lecture"
    command = [sys.executable, "-m", "nnlab.lecture", "all", "--out", str(out)]
    if os.environ.get("NNLAB_DOCS_FULL") != "1":
        command.append("--fast")
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    # Exit code 1: a claim did not hold, which the report says; anything else is a failure.
    if done.returncode not in (0, 1) or not (out / "report.md").is_file():
        raise PluginError(f"the lecture report failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def on_pre_build(config: Any) -> None:
    """Executes the notebooks and makes the lecture report, several at a time."""
    work: Path = _state["work"]
    if work.exists():
        shutil.rmtree(work)
    (work / "notebooks").mkdir(parents=True)
    if os.environ.get("NNLAB_DOCS_FULL") != "1":
        os.environ["NNLAB_NOTEBOOK_FAST"] = "1"  # the notebooks' kernels inherit it
    # tqdm.auto's note that ipywidgets is missing would be printed on the pages: the site shows
    # no progress bar either way.
    filters = [os.environ.get("PYTHONWARNINGS", ""), "ignore:IProgress not found"]
    os.environ["PYTHONWARNINGS"] = ",".join(f for f in filters if f)
    jobs = int(os.environ.get("NNLAB_DOCS_JOBS", os.cpu_count() or 1))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_lecture, work)]
        futures += [pool.submit(_execute, notebook, work) for notebook in NOTEBOOKS]
        for future in futures:
            future.result()
    _state["seconds"] = time.perf_counter() - start


def _add(files: Files, config: Any, src_uri: str, path: Path, repo_path: str | None) -> None:
    if files.get_file_from_path(src_uri) is not None:
        files.remove(files.get_file_from_path(src_uri))
    files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    if repo_path is not None:
        SOURCES[src_uri] = repo_path


def _reference_page(package: str, modules: list[str]) -> str:
    blocks = [f"# {package}\n"]
    blocks += [f"::: {module}\n    options:\n      heading_level: 2\n" for module in modules]
    return "\n".join(blocks)


@event_priority(100)  # before mkdocs-jupyter's, which turns the notebooks it sees into pages
def on_files(files: Files, config: Any) -> Files:
    work: Path = _state["work"]
    for file in list(files):  # docs/'s own pages and what they show (figures/, assets/)
        if file.abs_src_path and Path(file.abs_src_path).resolve().is_relative_to(ROOT / "docs"):
            SOURCES[file.src_uri] = f"docs/{file.src_uri}"
    _add(files, config, "index.md", ROOT / "README.md", "README.md")
    _add(
        files, config, "notebooks/index.md", ROOT / "notebooks" / "README.md", "notebooks/README.md"
    )
    for notebook in NOTEBOOKS:  # plain files of the work folder, as mkdocs-jupyter expects
        src_uri = f"notebooks/{notebook.name}"
        files.append(File(src_uri, str(work), config["site_dir"], config["use_directory_urls"]))
        SOURCES[src_uri] = src_uri
    lecture = work / "lecture"
    for path in sorted(lecture.rglob("*")):
        if path.is_file() and path.suffix in (".md", ".png", ".csv", ".txt"):
            name = "index.md" if path.name == "report.md" else path.relative_to(lecture).as_posix()
            _add(files, config, f"lecture/{name}", path, None)
    reference = []
    for package, modules in REFERENCE.items():
        src_uri = f"reference/{package}.md"
        files.append(File.generated(config, src_uri, content=_reference_page(package, modules)))
        reference.append({package: src_uri})
    guides = sorted(f.src_uri for f in files.documentation_pages() if "/" not in f.src_uri)
    config["nav"] = [
        {"Home": "index.md"},
        {"Course": ["notebooks/index.md", *(f"notebooks/{nb.name}" for nb in NOTEBOOKS)]},
        {"Lecture report": "lecture/index.md"},
        {"Guides": [uri for uri in guides if uri != "index.md"]},
        {"API reference": reference},
    ]
    return files


def _rewrite(target: str, page: Page, files: Files) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return target
    path, _, anchor = target.partition("#")
    source = SOURCES.get(page.file.src_uri)
    if not path or source is None:
        return target
    repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    site = {repo: uri for uri, repo in SOURCES.items()}.get(repo_path)
    if site is not None and files.get_file_from_path(site) is not None:
        link = posixpath.relpath(site, posixpath.dirname(page.file.src_uri) or ".")
    elif (ROOT / repo_path).exists() and not repo_path.startswith(".."):
        kind = "tree" if (ROOT / repo_path).is_dir() else "blob"
        link = f"{repository()}/{kind}/main/{repo_path}"
    else:
        return target  # a link to nothing: the strict build names it
    return f"{link}#{anchor}" if anchor else link


def on_page_markdown(markdown: str, page: Page, config: Any, files: Files) -> str:
    return LINK.sub(lambda m: m[1] + _rewrite(m[2], page, files) + m[3], markdown)


def on_page_content(html: str, page: Page, config: Any, files: Files) -> str:
    """A notebook page: the Colab badge first; no script from a CDN (the notebooks use no
    LaTeX, and the site works offline)."""
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    html = EXTERNAL_SCRIPT.sub("", html)
    badge = get_relative_url("assets/colab-badge.svg", page.url)
    name = posixpath.basename(page.file.src_uri)
    return (
        f'<p><a href="{colab_url(name)}"><img alt="Open in Colab" src="{badge}"></a></p>\n' + html
    )


def on_post_build(config: Any) -> None:
    if "seconds" in _state:
        print(f"notebooks and lecture report: {_state['seconds']:.0f} s", file=sys.stderr)
