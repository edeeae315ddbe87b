"""Test a checkpoint written by train.py: `python eval.py ckpt_path=<path>`; see README.md."""

import hydra
from omegaconf import DictConfig

from nnlab import cli
from nnlab.core.hydra import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    from nnlab.evaluate import evaluate

    return cli.run(evaluate, cfg)


if __name__ == "__main__":
    main()
