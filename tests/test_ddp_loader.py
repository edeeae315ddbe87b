"""The resident loader under real two-process DDP (gloo, CPU): each rank reads its own shard,
together they cover the training split every epoch, and the order changes per epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L
    import torch
    from nnlab.data.base import ArrayDataModule

    class Indexed(ArrayDataModule):
        task = "multiclass"

        def load(self):
            x = torch.arange(104, dtype=torch.float32)[:, None]  # each input is its index
            return {"train": (x, torch.arange(104) % 2)}, ("even", "odd")

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 2)
            self.seen, self.epochs = [], []

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.seen.append(x[:, 0].long())
            return torch.nn.functional.cross_entropy(self.w(x), y)

        def on_train_epoch_end(self):
            mine = torch.cat(self.seen)
            self.seen = []
            everyone = self.all_gather(mine)  # (world_size, shard)
            self.epochs.append(everyone.tolist())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = Indexed(batch_size=8, normalize="none", seed=5)
    data.setup()
    train = data.splits["train"][0][:, 0].long().tolist()
    model = Recorder()
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    if trainer.is_global_zero:
        json.dump({"train": train, "epochs": model.epochs}, open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
def test_two_process_ddp_shards_cover_the_split_disjointly(tmp_path):
    script, out = tmp_path / "ddp_shards.py", tmp_path / "shards.json"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, str(script), str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    train = sorted(result["train"])
    orders = []
    for ranks in result["epochs"]:
        assert len(ranks) == 2 and len(ranks[0]) == len(ranks[1])  # equal shards
        both = ranks[0] + ranks[1]
        assert sorted(set(both)) == train  # together: every training sample
        padding = len(both) - len(train)
        assert padding == len(train) % 2  # padded like DistributedSampler, nothing else shared
        assert len(set(ranks[0]) & set(ranks[1])) <= padding
        orders.append(ranks[0])
    assert orders[0] != orders[1]  # a new permutation each epoch
