"""Ships the repository's configs/ inside the package (nnlab/configs) when a wheel is built, so
that `pip install .` gives console scripts that compose the same configs from any folder. All
other metadata is in pyproject.toml. In a source checkout nnlab reads configs/ directly
(nnlab.core.hydra.config_dir), so edits there take effect without reinstalling."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py, plus a copy of configs/ (less configs/local/) as the package's `configs`
    folder."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "configs"
        target = Path(self.build_lib) / "nnlab" / "configs"
        if target.exists():
            shutil.rmtree(target)
        caches = shutil.ignore_patterns("*.pyc", "__pycache__")

        def ignore(folder: str, names: list[str]) -> set[str]:
            # configs/local/ holds one machine's own settings: never shipped.
            local = {"local"} if Path(folder) == source else set()
            return set(caches(folder, names)) | local

        shutil.copytree(source, target, ignore=ignore)


setup(cmdclass={"build_py": BuildWithConfigs})
