"""The course site (mkdocs.yml, docs/hooks.py), built once per session with `mkdocs build
--strict` into a temporary folder, served over real HTTP on 127.0.0.1 and opened page by page
in headless Chromium through selenium: every page loads, every image has decoded, and the
browser console has no error. Skips, saying what is missing, without the docs extra or without
Debian's chromium and chromium-driver (.ci/run installs them; `make setup` the docs extra)."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS_MODULES = ("mkdocs", "material", "mkdocs_jupyter", "mkdocstrings_handlers.python", "selenium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _missing() -> str | None:
    absent = [name for name in DOCS_MODULES if importlib.util.find_spec(name.split(".")[0]) is None]
    if absent:
        return f"the docs extra is not installed (no {', '.join(absent)}): pip install -e '.[docs]'"
    if _chromium() is None or _chromedriver() is None:
        return "no chromium or chromedriver: apt-get install chromium chromium-driver"
    return None


def _chromium() -> str | None:
    """Debian's chromium; GitHub's Ubuntu runners have Google Chrome instead."""
    names = ("chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


def _chromedriver() -> str | None:
    runner = os.environ.get("CHROMEWEBDRIVER")  # where GitHub's runners keep Chrome's driver
    return shutil.which("chromedriver") or (
        shutil.which("chromedriver", path=runner) if runner else None
    )


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once, strictly (warnings are errors), with its notebooks executed."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    problems = [line for line in built.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert built.returncode == 0, "\n".join(problems) or built.stdout[-3000:] + built.stderr[-5000:]
    # The notebooks ran while the site built, in the work folder beside it.
    for nb in NOTEBOOKS:
        executed = json.loads((out.with_name("site-work") / "notebooks" / nb.name).read_text())
        assert all(c["execution_count"] for c in executed["cells"] if c["cell_type"] == "code")
    return out


@pytest.fixture(scope="session")
def server(site: Path) -> Iterator[str]:
    """The site over HTTP on a free loopback port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a request the browser dropped half-way (it moved on to the next page)

    handler = functools.partial(Quiet, directory=str(site))
    httpd = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, site: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_chromedriver()))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _repository() -> str:
    """pyproject.toml's [project.urls] Repository (as text: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (url,) = re.findall(r'^Repository = "([^"]+)"$', text, re.MULTILINE)
    return url


def pages(site: Path) -> list[str]:
    """Every HTML page of the site, as a path relative to its root."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))


def check_parts(site: Path) -> None:
    """The home page, the course's pages with their Colab badges and exercises, the lecture
    report with every figure, the guides and the API reference."""
    found = set(pages(site))
    assert "index.html" in found and "lecture/index.html" in found
    assert {f"notebooks/{nb.stem}/index.html" for nb in NOTEBOOKS} <= found
    assert any(page.startswith("reference/") for page in found)
    assert {"exercises/index.html", "site/index.html", "config/index.html"} <= found
    lecture = (site / "lecture" / "index.html").read_text(encoding="utf-8")
    report = (site.with_name("site-work") / "lecture" / "report.md").read_text(encoding="utf-8")
    assert lecture.count("<img") == report.count("![") > 10  # every figure of the report
    repository = _repository()
    colab = repository.replace("https://github.com/", "https://colab.research.google.com/github/")
    for nb in NOTEBOOKS:
        html = (site / "notebooks" / nb.stem / "index.html").read_text(encoding="utf-8")
        assert f'href="{colab}/blob/main/notebooks/{nb.name}"' in html
        assert "not implemented yet" in html  # the exercises' checks ran, as the student sees them
        assert 'src="https://' not in html  # nothing from a CDN


def test_site_is_built_strictly_nightly_and_published_from_main() -> None:
    def steps(name: str) -> str:
        workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
        return " ".join(s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"])

    docs = yaml.safe_load((ROOT / ".github" / "workflows" / "docs.yml").read_text())
    assert docs[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as true
    assert "mkdocs build --strict" in steps("docs.yml")
    uses = [s.get("uses", "") for job in docs["jobs"].values() for s in job["steps"]]
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert docs["permissions"]["pages"] == "write"
    assert "make docs" in steps("nightly.yml")
    makefile = (ROOT / "Makefile").read_text()
    assert "mkdocs build --strict" in makefile and ",docs]" in makefile
    assert "apt-get install -y -qq chromium chromium-driver" in (ROOT / ".ci" / "run").read_text()


def test_notebooks_install_nnlab_on_colab_from_the_repository() -> None:
    repository = _repository()
    assert repository.startswith("https://github.com/")
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert 'if "google.colab" in sys.modules:' in first
        assert f'"nnlab @ git+{repository}"' in first


@pytest.mark.slow
# The build runs the seven notebooks and every study: minutes, more on a busy machine.
@pytest.mark.timeout(2400)
def test_site_builds_with_every_part_and_every_page_works_in_a_browser(
    site: Path, server: str, browser: object
) -> None:
    """One test, so that pytest-xdist builds the site once."""
    check_parts(site)
    driver = browser
    problems: list[str] = []
    checked = 0
    for page in pages(site):
        url = f"{server}/{page}"
        with urllib.request.urlopen(url, timeout=30) as response:  # real HTTP, status 200
            assert response.status == 200, url
        driver.get(url)
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
        images = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            const imgs = [...document.images];
            Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
                i.onload = r; i.onerror = r; }))).then(() => done(
                imgs.map(i => [i.getAttribute('src').slice(0, 80), i.naturalWidth])));"""
        )
        title = driver.title
        if not title or ("404" in title and page != "404.html"):
            problems.append(f"{page}: title {title!r}")
        problems += [f"{page}: image {src} did not decode" for src, width in images if width <= 0]
        for entry in driver.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console: {entry['message']}")
        checked += 1
    assert checked >= 20
    assert not problems, "\n".join(problems)
