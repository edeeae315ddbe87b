"""DDP processes under Hydra: one folder per job, in a single run and in a multirun alike.

Lightning's DDP strategy (strategy=ddp) starts a node's ranks ≥ 1 by running the command line
again, with `hydra.run.dir` set to the first process's folder. In a multirun that command line
is the whole sweep (`-m` and every swept value): each extra process would run the sweep again,
into a sweep folder of its own, and only keep step with the first process by luck.
`job_processes` makes them run the one job, in the job's folder, and clears what a launch leaves
behind (the process group, the launch's environment variables) when the job ends, so that the
next job of the sweep starts processes of its own. Processes started by torchrun or SLURM are
left alone: there the launcher starts every rank. Under Hydra's SLURM launcher a job's tasks
share the job's folder; a single run started by torchrun must name its folder
(`hydra.run.dir=...`), or each process would make one of its own (`check_shared_folder`).

This module relies on one Lightning internal, the function its launcher builds that command
with; `check_launcher` verifies at import that it is still there (checked: Lightning 2.6.6).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd, to_absolute_path
from lightning.pytorch.strategies.launchers import subprocess_script

from nnlab.core import ConfigError

# What Lightning's launcher sets in the first process's environment to start the others.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# How long a finished job waits for its other processes to exit before ending them.
EXIT_WAIT_S = 60.0


def check_launcher() -> None:
    """Raises ImportError if Lightning's launcher no longer builds its Hydra command through
    the function `job_processes` replaces."""
    if not callable(getattr(subprocess_script, "_hydra_subprocess_cmd", None)):
        raise ImportError(
            f"nnlab.ddp replaces lightning.pytorch.strategies.launchers.subprocess_script."
            f"_hydra_subprocess_cmd, which lightning {L.__version__} no longer has (checked "
            f"against 2.6.6): adapt src/nnlab/ddp.py"
        )


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_command(local_rank: int) -> tuple[list[str], str]:
    """The command, and the folder to run it in, that starts process `local_rank` of this
    multirun job: the script with the job's own overrides (no `-m`, no sweep), in the job's
    folder, like Lightning's command for a single run. Refuses a launcher that runs jobs in
    worker processes (hydra/launcher=local_parallel)."""
    hydra = HydraConfig.get()
    if not str(hydra.launcher.get("_target_", "")).endswith(".BasicLauncher"):
        # A parallel launcher runs jobs in worker processes, whose command line is the
        # worker's: there is no script to start again.
        choice = hydra.runtime.choices.get("hydra/launcher")
        raise ConfigError(
            f"hydra/launcher={choice} runs jobs in worker processes, which cannot start "
            "the DDP processes of trainer.strategy=ddp: use the default launcher (jobs one "
            "after another) or hydra/launcher=slurm (SLURM starts them)"
        )
    import __main__  # the script being run (imported here, as Lightning does: it changes)

    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", spec.name]
    command += launch_arguments(sys.argv[1:])
    command += list(hydra.overrides.task)
    command += [
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",  # Lightning's name in a single run
        "hydra.output_subdir=null",  # the first process wrote the job's .hydra/ already
    ]
    return command, get_original_cwd()


def launch_arguments(argv: Sequence[str]) -> list[str]:
    """The arguments of a multirun's command line that are not the sweep: flags such as
    --config-name and their values, a subcommand; not `-m` nor any override."""
    kept = []
    for arg in argv:
        if arg in ("-m", "--multirun"):
            continue
        if not arg.startswith("-") and ("=" in arg or arg.startswith("~")):
            continue  # an override (key=value, +key=value, ~key): the job's own come instead
        kept.append(arg)
    return kept


def check_shared_folder() -> None:
    """Refuses a single run whose processes some launcher other than Lightning's started
    (torchrun: WORLD_SIZE > 1 and LOCAL_RANK set at start) without `hydra.run.dir`: each
    process would name its own run folder (a random id per process) and write into it."""
    if not HydraConfig.initialized() or in_multirun():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "LOCAL_RANK" not in os.environ:
        return
    if any(o.startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra):
        return
    raise ConfigError(
        "this run's processes were started by a launcher such as torchrun, each with a run "
        "folder of its own: name one for all of them, e.g. hydra.run.dir=logs/train/runs/ddp1"
    )


@contextmanager
def job_processes(trainer: L.Trainer) -> Iterator[None]:
    """Runs the block (a job's fitting and testing with `trainer`) so that under a multirun
    the DDP processes Lightning starts run this job alone, in its folder (see the module's
    docstring), and are gone when it ends. Does nothing outside a multirun, or in a process
    that some launcher (Lightning's, torchrun, SLURM) started, but `check_shared_folder`."""
    check_shared_folder()
    if not in_multirun() or "LOCAL_RANK" in os.environ:
        yield
        return
    saved = {name: os.environ.get(name) for name in LAUNCH_ENV}
    lightning_command = subprocess_script._hydra_subprocess_cmd
    subprocess_script._hydra_subprocess_cmd = job_command
    failed = True
    try:
        yield
        failed = False
    finally:
        subprocess_script._hydra_subprocess_cmd = lightning_command
        _end_processes(getattr(trainer.strategy.launcher, "procs", []), wait=not failed)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _end_processes(procs: Sequence[subprocess.Popen], wait: bool) -> None:
    """Lets the job's other processes exit (they finish with the first), or ends them: at once
    when the job failed (they may wait in a collective for a process that is gone)."""
    for proc in procs:
        try:
            proc.wait(timeout=EXIT_WAIT_S if wait else 0.01)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


check_launcher()
