"""Value ranges that the constructors do not check themselves: a StepLR with step_size=0 or a
CosineAnnealingLR with T_max=0 is built happily and fails only at the end of the first epoch (a
division by zero); an optimizer with lr=0, a Trainer with max_epochs=0 or a ReduceLROnPlateau
with a negative patience train on and write the results of a network that never learned.
Checked with the keys' types (nnlab.validation.check_arguments), before anything is built.

`check_flags` refuses a top-level switch (test, print_config) that is not a bool, and
`suspicious` names legitimate but suspicious values (an Adam learning rate of 1, a StepLR that
never steps within the run): nnlab.validation logs each as a warning and the run goes on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nnlab.core.errors import ConfigError, is_int

TRAINER = "lightning.pytorch.Trainer"
STEP_LR = "torch.optim.lr_scheduler.StepLR"
COSINE_LR = "torch.optim.lr_scheduler.CosineAnnealingLR"
PLATEAU_LR = "torch.optim.lr_scheduler.ReduceLROnPlateau"
EARLY_STOP = "nnlab.callbacks.EarlyStop"


@dataclass(frozen=True)
class Rule:
    """`<group>.<key>` of a config whose `_target_` is `target` (None: any target of the group)
    must pass `valid`; `requirement` says what passes (and why) in the error message."""

    group: str
    target: str | None
    key: str
    valid: Callable[[float], bool]
    requirement: str


RULES = (
    # Negative ones torch refuses itself (its message is kept).
    Rule("optimizer", None, "lr", lambda v: v != 0, "> 0 (a zero learning rate trains nothing)"),
    Rule("scheduler", STEP_LR, "step_size", lambda v: v >= 1, ">= 1 (epochs between drops)"),
    Rule("scheduler", STEP_LR, "gamma", lambda v: v > 0, "> 0 (the factor of each drop)"),
    Rule("scheduler", COSINE_LR, "T_max", lambda v: v >= 1, ">= 1 (epochs of the decay)"),
    Rule("scheduler", COSINE_LR, "eta_min", lambda v: v >= 0, ">= 0 (the lowest learning rate)"),
    Rule(
        "scheduler",
        PLATEAU_LR,
        "patience",
        lambda v: v >= 0,
        ">= 0 (epochs without improvement before the learning rate drops)",
    ),
    Rule("scheduler", PLATEAU_LR, "cooldown", lambda v: v >= 0, ">= 0 (epochs after a drop)"),
    Rule("scheduler", PLATEAU_LR, "min_lr", lambda v: v >= 0, ">= 0 (the lowest learning rate)"),
    Rule(
        "callbacks.early_stopping",
        EARLY_STOP,
        "patience",
        lambda v: v >= 0,
        ">= 0 (epochs without improvement before stopping)",
    ),
    Rule(
        "callbacks.early_stopping",
        EARLY_STOP,
        "min_delta",
        lambda v: v >= 0,
        ">= 0 (the least change that counts as an improvement)",
    ),
    Rule(
        "trainer",
        TRAINER,
        "max_epochs",
        lambda v: v != 0,
        ">= 1, or -1 for no limit (0 epochs trains nothing)",
    ),
    Rule(
        "trainer",
        TRAINER,
        "max_steps",
        lambda v: v != 0,
        ">= 1, or -1 for no limit (0 steps trains nothing)",
    ),
    Rule(
        "trainer",
        TRAINER,
        "check_val_every_n_epoch",
        lambda v: v >= 1,
        ">= 1 or null (validate every N epochs)",
    ),
    Rule("trainer", TRAINER, "val_check_interval", lambda v: v > 0, "> 0 or null"),
    Rule(
        "trainer",
        TRAINER,
        "accumulate_grad_batches",
        lambda v: v >= 1,
        ">= 1 (batches per optimizer step)",
    ),
    Rule(
        "trainer",
        TRAINER,
        "limit_train_batches",
        lambda v: v != 0,
        "> 0 (0 training batches per epoch trains nothing)",
    ),
)


# Top-level switches of train.yaml and eval.yaml (a string such as "no" would count as true).
FLAGS = ("test", "print_config")


def check_flags(cfg: Mapping[str, Any]) -> None:
    """Refuses a top-level switch that is not true or false."""
    for key in FLAGS:
        if key in cfg and not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return is_int(value) or isinstance(value, float)


def check_ranges(
    options: Mapping[str, Any],
    group: str,
    target: str,
    sources: Mapping[str, str] | None = None,
) -> None:
    """Raises ConfigError for the first of `options` (the config of `group`, whose `_target_` is
    `target`, its keys' types already checked) out of its range. `sources`: for a key whose
    value comes from an interpolation (`T_max: ${trainer.max_epochs}`), that interpolation,
    named in the message so the user knows which key to set."""
    for rule in RULES:
        if rule.group != group or rule.target not in (None, target):
            continue
        value = options.get(rule.key)
        if value is None or (is_number(value) and rule.valid(value)):
            continue
        source = (sources or {}).get(rule.key)
        note = f" (from {source}: set {group}.{rule.key} itself)" if source else ""
        requirement = rule.requirement if is_number(value) else "a number"
        raise ConfigError(f"{group}.{rule.key} must be {requirement}, got {value!r}{note}")


# Optimizers whose step moves every weight by about lr, whatever the gradient's scale.
ADAPTIVE = tuple(
    f"torch.optim.{name}"
    for name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta")
)


def suspicious(
    optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], trainer: Mapping[str, Any]
) -> list[str]:
    """Warnings about legitimate but suspicious values of the optimizer, scheduler and trainer
    configs (plain data, each {} when absent): the run goes on."""
    found = []
    lr, target = optimizer.get("lr"), optimizer.get("_target_")
    if target in ADAPTIVE and is_number(lr) and lr >= 1:
        found.append(
            f"optimizer.lr={lr} is large for {target.rsplit('.', 1)[-1]}, which moves every weight "
            "by about lr per step: such runs usually diverge (typical values: 1e-4 to 1e-2)"
        )
    epochs = trainer.get("max_epochs")
    if epochs == -1 and trainer.get("max_steps", -1) in (-1, None):
        found.append(
            "trainer.max_epochs=-1 and no trainer.max_steps: training goes on until it is "
            "stopped (by you, or by an early-stopping callback)"
        )
    if not (is_int(epochs) and epochs >= 1):
        return found
    step_size, t_max = scheduler.get("step_size"), scheduler.get("T_max")
    if scheduler.get("_target_") == STEP_LR and is_number(step_size) and step_size >= epochs:
        found.append(
            f"scheduler.step_size={step_size} >= trainer.max_epochs={epochs}: the learning rate "
            "never drops"
        )
    if scheduler.get("_target_") == COSINE_LR and is_number(t_max) and t_max < epochs:
        found.append(
            f"scheduler.T_max={t_max} < trainer.max_epochs={epochs}: the cosine schedule is "
            f"periodic, so the learning rate rises again after epoch {t_max}"
        )
    return found
