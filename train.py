"""Train a model: `python train.py [group=option ...] [key=value ...]`; see README.md."""

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

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
    except MissingMandatoryValue as e:  # a `???` in a config that the command line did not set
        raise SystemExit(f"error: {e.full_key} must be set, e.g. {e.full_key}=...") from None
    except InstantiationException as e:  # Hydra wraps what a constructor raises
        if isinstance(e.__cause__, ConfigError):
            raise SystemExit(f"error: {e.__cause__}") from None
        raise


if __name__ == "__main__":
    main()
