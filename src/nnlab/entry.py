"""The Hydra applications behind train.py, eval.py and predict.py, and behind the console
scripts a `pip install` adds (nnlab-train, nnlab-eval, nnlab-predict): one definition each,
composing the configs of nnlab.core.hydra.config_dir(). Outputs go under the launch folder's
`logs/` (configs/paths/default.yaml). Importing this module does not import torch: `--help` and
`--cfg job` answer first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from nnlab import cli
from nnlab.core.env import load_env_file
from nnlab.core.hydra import config_dir, register_resolvers


def hydra_app(config_name: str, job: Callable[[], Callable[[DictConfig], Any]]) -> Callable:
    """A Hydra main for configs/<config_name>.yaml that runs `job()(cfg)` through nnlab.cli.run;
    `job` imports the heavy module only when a run starts."""

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        return cli.run(job(), cfg)

    def start() -> Any:
        load_env_file()  # ./.env: per-machine keys and paths, before the config is composed
        register_resolvers()
        return main()

    return start


def _train() -> Callable[[DictConfig], Any]:
    from nnlab.train import train

    return train


def _evaluate() -> Callable[[DictConfig], Any]:
    from nnlab.evaluate import evaluate

    return evaluate


def _predict() -> Callable[[DictConfig], Any]:
    from nnlab.predict import predict

    return predict


# The apps, by the sub-command and config that name them (nnlab.train.train & co. are the runs).
train_app = hydra_app("train", _train)
eval_app = hydra_app("eval", _evaluate)
predict_app = hydra_app("predict", _predict)
APPS = {"train": train_app, "eval": eval_app, "predict": predict_app}
