"""Each task module owns what the course says a task is: its link, its maximum-likelihood loss
(loss=auto), its prediction and probabilities, its monitored metric and that metric's mode, and
predict.py's value columns."""

from __future__ import annotations

import pytest
import torch

from nnlab.core.tasks import TASKS
from nnlab.data.spec import DataSpec
from nnlab.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from nnlab.predict import NO_OUTPUT, Chunk, Columns
from nnlab.tasks import BY_TASK, BinaryTask, MulticlassTask, PerceptronTask, RegressionTask
from nnlab.tasks.metrics import metric_mode

LINEAR = {"_target_": "nnlab.nn.networks.MLP", "hidden_sizes": []}
PERCEPTRON = {"_target_": "nnlab.nn.networks.Perceptron"}
CLASSES = {BinaryTask: ("no", "yes"), MulticlassTask: ("a", "b", "c", "d")}


def module(cls, spec: DataSpec, model=LINEAR, loss="auto"):
    return cls(spec=spec.to_dict(), model=model, loss=loss)


def test_every_task_has_its_module():
    assert set(BY_TASK) == set(TASKS)
    assert {BY_TASK[t].task for t in TASKS} == set(TASKS)


def test_each_task_sizes_the_network_from_its_datas_targets():
    # One output per regression target, one logit for binary (the perceptron's score too),
    # one per class for multiclass: the data says what its targets are, the task what that
    # takes; the network is built that size.
    cases = [
        (RegressionTask, DataSpec("regression", (3,), 2), LINEAR, 2),
        (RegressionTask, DataSpec("regression", (3,)), LINEAR, 1),
        (BinaryTask, DataSpec("binary", (3,), class_names=("no", "yes")), LINEAR, 1),
        (PerceptronTask, DataSpec("binary", (3,), class_names=("no", "yes")), PERCEPTRON, 1),
        (MulticlassTask, DataSpec("multiclass", (3,), class_names=tuple("abcde")), LINEAR, 5),
    ]
    for cls, spec, model, outputs in cases:
        assert cls.output_size(spec) == outputs
        task = module(cls, spec, model=model)
        assert task.num_outputs == outputs
        assert task(torch.zeros(2, 3)).shape == (2, outputs)


def test_an_older_checkpoints_spec_still_reads():
    # Specs written before tasks sized the network gave its outputs (num_outputs) instead.
    old = {"task": "multiclass", "input_shape": [3], "num_outputs": 4, "class_names": []}
    spec = DataSpec.from_dict(old)
    assert spec.num_targets == 1 and spec.class_names == ("0", "1", "2", "3")
    assert MulticlassTask.output_size(spec) == 4
    old = {"task": "regression", "input_shape": [3], "num_outputs": 2, "class_names": []}
    assert DataSpec.from_dict(old).num_targets == 2
    binary = {"task": "binary", "input_shape": [3], "num_outputs": 1, "class_names": ["n", "y"]}
    assert DataSpec.from_dict(binary) == DataSpec("binary", (3,), 1, ("n", "y"))


@pytest.mark.parametrize(
    ("cls", "loss", "monitor", "mode"),
    [
        (RegressionTask, MSELoss, "val/mse", "min"),  # Gaussian likelihood
        (BinaryTask, BCEWithLogitsLoss, "val/acc", "max"),  # Bernoulli likelihood
        (MulticlassTask, CrossEntropyLoss, "val/acc", "max"),  # categorical likelihood
    ],
)
def test_loss_auto_is_the_tasks_maximum_likelihood_loss(cls, loss, monitor, mode):
    spec = DataSpec(cls.task, (3,), class_names=() if cls is RegressionTask else CLASSES[cls])
    for config in ("auto", None, {"name": "auto"}):
        assert type(module(cls, spec, loss=config).loss_fn) is loss
    assert (cls.monitor, cls.monitor_mode) == (monitor, mode)
    assert metric_mode(cls.monitor) == cls.monitor_mode  # the name's direction agrees
    best = module(cls, spec).best
    assert type(best).__name__ == ("MaxMetric" if mode == "max" else "MinMetric")


def test_regression_link_is_the_identity_and_predictions_are_in_target_units():
    spec = DataSpec("regression", (3,), 2)
    task = module(RegressionTask, spec)
    z = torch.randn(5, 2)
    assert torch.equal(task.link(z), z)
    assert torch.equal(task.predicted(z), z)
    assert task.prediction_columns(True, ["0", "1"]) == ["prediction_0", "prediction_1"]
    rows, numbers = task.prediction_values(z, task.predicted(z), [], False)
    assert rows == z.double().tolist()
    assert numbers.dtype == torch.float64
    one = module(RegressionTask, DataSpec("regression", (3,), 1))
    assert one.prediction_columns(False, []) == ["prediction"]


def test_regression_maps_back_to_the_targets_units():
    spec = DataSpec.from_dict(
        {**DataSpec("regression", (3,), 1).to_dict(), "target_scale": {"mean": 10.0, "std": 2.0}}
    )
    task = module(RegressionTask, spec)
    z = torch.tensor([[0.0], [1.5]])
    rows, _ = task.prediction_values(z, z, [], False)
    assert rows == [[10.0], [13.0]]
    assert task.in_target_units(z).tolist() == [[10.0], [13.0]]


def test_binary_probabilities_are_the_sigmoid_of_the_logit():
    task = module(BinaryTask, DataSpec("binary", (3,), class_names=("no", "yes")))
    z = torch.tensor([[-2.0], [0.0], [0.5], [3.0]])
    p1 = 1 / (1 + torch.exp(-z.squeeze(-1)))
    assert torch.allclose(task.link(z), p1)
    assert torch.allclose(task.probabilities(z), torch.stack([1 - p1, p1], dim=-1))
    assert task.predicted(z).tolist() == [0, 0, 1, 1]  # class 1 where z > 0
    predicted, confidence = task.confidence(z)
    assert torch.allclose(confidence, torch.where(predicted == 1, p1, 1 - p1))
    assert task.prediction_columns(False, ["no", "yes"]) == ["prediction", "probability"]
    assert task.prediction_columns(True, ["no", "yes"]) == [
        "prediction",
        "probability",
        "probability_no",
        "probability_yes",
    ]
    rows, _ = task.prediction_values(z, task.predicted(z), ["no", "yes"], True)
    assert rows[3][:2] == ["yes", pytest.approx(float(p1[3]))]
    assert rows[0][2:] == pytest.approx([1 - float(p1[0]), float(p1[0])])


def test_multiclass_probabilities_are_the_softmax_and_sum_to_one():
    task = module(MulticlassTask, DataSpec("multiclass", (3,), class_names=("a", "b", "c")))
    z = torch.tensor([[1.0, 2.0, 0.5], [-1.0, -3.0, 4.0]])
    p = task.probabilities(z)
    assert torch.allclose(p, z.exp() / z.exp().sum(dim=-1, keepdim=True))
    assert torch.allclose(p.sum(dim=-1), torch.ones(2))
    assert task.predicted(z).tolist() == [1, 2]
    _, confidence = task.confidence(z)
    assert torch.allclose(confidence, p.max(dim=-1).values)
    rows, numbers = task.prediction_values(z, task.predicted(z), ["a", "b", "c"], False)
    assert [row[0] for row in rows] == ["b", "c"]
    assert numbers.shape == (2, 3)


def test_the_perceptron_predicts_its_step_output():
    task = module(
        PerceptronTask, DataSpec("binary", (2,), class_names=("no", "yes")), model=PERCEPTRON
    )
    assert task.default_loss == BinaryTask.default_loss  # its val/test loss gauge
    z = torch.tensor([[-1.0], [0.0], [2.0]])
    assert task.predicted(z).tolist() == [0, 1, 1]  # 1[score ≥ 0]: a score of 0 is class 1
    x = torch.randn(6, 2)
    assert torch.equal(task.predict(x), task.net.predict(x))


def test_predict_asks_the_module_for_its_columns():
    task = module(MulticlassTask, DataSpec("multiclass", (3,), 1, ("cat", "dog", "=cmd")))
    columns = Columns(task, True, "id")
    assert columns.header == [
        "id",
        "prediction",
        "probability",
        "probability_cat",
        "probability_dog",
        "probability_=cmd",
        "error",
    ]
    z = torch.tensor([[0.0, 3.0, 1.0], [float("nan"), 0.0, 0.0]])
    rows = columns.rows(Chunk(["r1", "r2"], z, [None, None]), z, task.predicted(z))
    p = torch.softmax(z[0].double(), dim=-1).tolist()
    assert rows[0] == ["r1", "dog", p[1], *p, ""]
    assert rows[1] == ["r2", "", "", "", "", "", NO_OUTPUT]  # not a finite number
