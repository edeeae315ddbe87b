"""Train a model: `python train.py [group=option ...] [key=value ...]`; see README.md."""

import hydra
from omegaconf import DictConfig

from nnlab import cli
from nnlab.core.hydra import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so that `--help` and `--cfg job` answer before torch is loaded.
    from nnlab.train import train

    return cli.run(train, cfg)


if __name__ == "__main__":
    main()
