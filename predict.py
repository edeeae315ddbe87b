"""Predict with a checkpoint written by train.py: `python predict.py ckpt_path=<path>
input=<csv | image | folder of images | .npy>`; see README.md. The same as `nnlab-predict` or
`nnlab predict` after a `pip install`: one app, in nnlab.entry."""

from nnlab.entry import predict_app

if __name__ == "__main__":
    predict_app()
