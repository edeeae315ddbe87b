"""Train a model: `python train.py [group=option ...] [key=value ...]`; see README.md.
The same as `nnlab-train` or `nnlab train` after a `pip install`: one app, in nnlab.entry."""

from nnlab.entry import train_app

if __name__ == "__main__":
    train_app()
