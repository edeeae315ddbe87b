"""Train a model: `python train.py [group=option ...] [key=value ...]`; see README.md."""

import hydra
from omegaconf import DictConfig

from nnlab.config import ConfigError, register_resolvers
from nnlab.data.download import DataUnavailableError

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so that `--help` and `--cfg job` answer before torch is loaded.
    from nnlab.train import train

    try:
        return train(cfg)
    # A user's mistake, or data that cannot be had offline: the message, not a traceback.
    except (ConfigError, DataUnavailableError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
