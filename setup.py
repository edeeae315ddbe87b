"""Ships the repository's configs/ inside the package (nnlab/configs) when a wheel is built, so
that `pip install .` gives console scripts that compose the same configs from any folder. All
other metadata is in pyproject.toml. In a source checkout nnlab reads configs/ directly
(nnlab.core.hydra.config_dir), so edits there take effect without reinstalling."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py, plus a copy of configs/ (YAML only) as the package's `configs` folder."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "configs"
        target = Path(self.build_lib) / "nnlab" / "configs"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


setup(cmdclass={"build_py": BuildWithConfigs})
