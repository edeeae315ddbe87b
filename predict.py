"""Predict with a checkpoint written by train.py: `python predict.py ckpt_path=<path>
input=<csv | image | folder of images>`; see README.md."""

import hydra
from omegaconf import DictConfig

from nnlab import cli
from nnlab.core.hydra import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> str:
    # Imported here so that `--help` and `--cfg job` answer before torch is loaded.
    from nnlab.predict import predict

    return cli.run(predict, cfg)


if __name__ == "__main__":
    main()
