"""Test a checkpoint written by train.py: `python eval.py ckpt_path=<path>`; see README.md.
The same as `nnlab-eval` or `nnlab eval` after a `pip install`: one app, in nnlab.entry."""

from nnlab.entry import eval_app

if __name__ == "__main__":
    eval_app()
