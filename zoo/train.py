"""The training engine every family shares: optimizer and schedule, gradient clipping, a progress bar,
validation NLL each epoch, early stopping, atomic checkpoints and exact resume.

Everything random in a step (data order, dynamic binarization, a family's mask draws) comes from generators
seeded by (seed, epoch) or (seed, step), so a run resumed from any checkpoint continues exactly as if it had
never stopped.

Under torchrun the same loop runs on every rank with DistributedDataParallel: `batch_size` is the global batch,
every rank draws the same global batch (and its binarization) and trains on its contiguous slice of it, each
slice's loss weighted by its share so that the averaged gradient is the gradient of the global batch's mean
loss. A run on W processes therefore follows the 1-process run (to float rounding), and its checkpoints, which
rank 0 alone writes, hold nothing rank-specific: resume them with any number of processes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed as zdist
from .data import ImageData
from .errors import InputError, ZooError
from .evaluate import nll, reconstruction, validate
from .image_folder import SPLIT_RULE
from .locking import atomic_write_text, hold_run_folder
from .model import Model
from .weights import load_into, load_weights, save_weights

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"  # the best epoch's weights
STOP_FILE = "stop.safetensors"  # the weights where a run stopped mid-epoch
STOP_REQUEST = "STOP"  # `touch RUN/STOP`: stop at the next checkpoint as at a time limit, card written
METRICS_FILE = "metrics.jsonl"  # per-step and per-validation records
RECIPE_FILE = "recipe.toml"  # the card a run trains, written at its start (card.toml comes at its end)
EPOCHS_DIR = "epochs"  # with keep_epochs: each epoch's shipped weights, epoch-NNN.safetensors
SIZING_SKIP, SIZING_STEPS, SIZING_SHARE = 20, 100, 0.9  # --time-budget: steps skipped, steps timed, share of time


@dataclass
class TrainConfig:
    """Hyper-parameters of a run; a card's [training] table and CLI flags fill it."""

    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    patience: int | None = None
    seed: int = 0
    checkpoint_every: int = 1000
    eval_batch_size: int = 500
    val_n: int | None = None
    max_steps: int | None = None
    time_limit: float | None = None
    time_budget: float | None = None  # size the schedule (epochs) to what fits in this many seconds
    ema: float = 0.0  # Polyak averaging of the weights (e.g. 0.999); 0 is off
    val_cfd: int = 0  # samples drawn at each validation for their classifier Frechet distance to val (0: off)
    select: str = "nll"  # what chooses the shipped checkpoint: "nll" (validation NLL) or "cfd" (needs val_cfd)
    val_grid: int = 64  # samples drawn into a grid PNG at each validation of a generative model (0: none)
    tensorboard: bool = False  # also log metrics.jsonl's figures as TensorBoard scalars in RUN/tensorboard/
    keep_epochs: bool = False  # also keep each epoch's shipped weights as RUN/epochs/epoch-NNN.safetensors
    hflip: bool = False  # mirror a random half of each training batch left-right (natural images, not digits)
    log_every: int = 50  # steps between records in the run folder's metrics.jsonl
    init: str | None = None  # start from these weights (a model id, run folder or Hub ref of the same architecture)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def __post_init__(self) -> None:
        if self.select not in ("nll", "cfd"):
            raise InputError(f"select must be 'nll' or 'cfd', got {self.select!r}")
        if not isinstance(self.val_cfd, int) or self.val_cfd < 0 or self.val_cfd == 1:
            raise InputError(f"val_cfd must be 0 (off) or at least 2 samples, got {self.val_cfd!r}")
        if self.select == "cfd" and not self.val_cfd:
            raise InputError("select = 'cfd' chooses checkpoints by the classifier Frechet distance of samples: "
                             "set val_cfd (--val-cfd N) to the number of samples drawn at each validation")
        if not isinstance(self.val_grid, int) or self.val_grid < 0:
            raise InputError(f"val_grid must be a number of samples (0: no grid), got {self.val_grid!r}")

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate at a global step: linear warm-up, then constant or cosine decay to 0."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            span = max(1, total - self.warmup_steps)
            return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
        raise InputError(f"unknown schedule '{self.schedule}'; use constant or cosine")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel updates each tensor in one pass (about 10x the default per-tensor loop on a CPU)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    raise InputError(f"unknown optimizer '{cfg.optimizer}'; use adam or adamw")


def hflip_half(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of a batch (N, C, H, W) left-right with probability 1/2, drawn from `generator` (the
    step's, so a resumed run sees the same batches): more data for natural images such as CIFAR-10, whose mirror
    images are as likely; not for digits."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def _seeded(*parts: int) -> torch.Generator:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


# ---- checkpoints ----------------------------------------------------------------------------------
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(out: Path, model: Model, opt: torch.optim.Optimizer, progress: dict[str, Any],
                    sync: bool = True, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write weights + optimizer as safetensors and the progress as JSON, atomically: the state file is
    replaced last and names its checkpoint, so a crash at any point leaves the previous one intact.
    Under torchrun rank 0 writes and, with sync, the other ranks wait for it."""
    if zdist.is_main():
        _write_checkpoint(out, model, opt, progress, extra or {})
    if sync:
        zdist.barrier()


def _write_checkpoint(out: Path, model: Model, opt: torch.optim.Optimizer, progress: dict[str, Any],
                      extra: dict[str, torch.Tensor]) -> None:
    step = progress["global_step"]
    name = f"checkpoint-{step:08d}.safetensors"
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors | extra
    sha = save_weights(tensors, out / name)
    state = dict(progress, checkpoint=name, checkpoint_sha256=sha, optimizer=opt_meta)
    tmp = out / (STATE_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(state, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / STATE_FILE)
    for old in out.glob("checkpoint-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(out: Path, model: Model, opt: torch.optim.Optimizer,
                    ema: "_Ema | None" = None) -> dict[str, Any]:
    """Restore model, optimizer (and the weight average) from the run folder's last good checkpoint; returns
    the progress."""
    try:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        name, sha = state["checkpoint"], state["checkpoint_sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ZooError(f"{out / STATE_FILE}: unreadable run state ({type(e).__name__}: {e}); nothing in {out} was "
                       "changed. Restore the file, or start a new run in another --out") from None
    if not isinstance(name, str) or Path(name).name != name or not name.startswith("checkpoint-"):
        raise ZooError(f"{out / STATE_FILE}: names the checkpoint {name!r}, which is not a checkpoint file of this "
                       "run folder")
    tensors = load_weights(out / name, sha)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    _restore_optimizer(opt, {k: v for k, v in tensors.items() if k.startswith("optim.")}, state["optimizer"])
    if ema is not None:
        ema.load(tensors)
    return state


# ---- the loop -------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a run produced: the validation NLL of the weights it ships, where they come from, and the per-epoch
    history."""

    best_val_nll: float
    best_epoch: int  # -1 when the shipped weights are those of a mid-epoch stop
    history: list[dict[str, float]] = field(default_factory=list)
    global_step: int = 0
    stopped_early: bool = False
    weights: Path | None = None  # the file holding the weights this stop ships
    best_step: int = 0  # the global step those weights were trained to
    sized_epochs: int | None = None  # the schedule's length in epochs when --time-budget sized it
    val_cfd: float | None = None  # with --val-cfd: the classifier Frechet distance of the shipped weights' samples

    @property
    def when(self) -> str:
        """Where the shipped weights come from, in words."""
        if self.best_epoch > 0:
            return f"at epoch {self.best_epoch} (step {self.best_step})"
        return f"at step {self.best_step}, where the run stopped mid-epoch"


class _Bar:
    """A rich progress bar showing loss, nats/image, it/s and ETA (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TextColumn("{task.fields[speed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), refresh_per_second=4)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, info="", speed="")
        self.t0, self.done0, self.total = time.time(), done, total
        # without a terminal (a log file) the bar cannot redraw: print a line every 2% instead
        self.every = None if self.progress.console.is_terminal else max(1, total // 50)

    def update(self, step: int, info: str) -> None:
        if self.enabled:
            rate = (step - self.done0) / max(1e-9, time.time() - self.t0)
            self.progress.update(self.task, completed=step, info=info, speed=f"{rate:.1f} it/s")
            if self.every and step % self.every == 0:
                eta = (self.total - step) / max(rate, 1e-9)
                self.log(f"step {step}/{self.total}  {info}  {rate:.2f} it/s  ETA {eta / 60:.1f} min")

    def resize(self, total: int) -> None:
        if self.enabled:
            self.total = total
            self.progress.update(self.task, total=total)
            self.every = None if self.progress.console.is_terminal else max(1, total // 50)

    def log(self, msg: str) -> None:
        if self.enabled:
            self.progress.console.print(msg)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()


class _LossModule(nn.Module):
    """`forward` is the model's training loss times a weight, so that DistributedDataParallel, which
    synchronises gradients through forward and backward, can wrap it."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator,
                weight: float) -> torch.Tensor:
        if x.shape[0] == 0:  # an empty shard (a last batch smaller than the world) adds zero gradients
            return sum((p * 0).sum() for p in self.model.parameters() if p.requires_grad)
        return self.model.training_loss(x, y, generator=generator) * weight


def _clip(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_, without its pass over every gradient when the norm is already within max_norm
    (its clip coefficient is then exactly 1)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if float(norm) + 1e-6 > max_norm:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


class _Ema:
    """Polyak averaging of a model's parameters (buffers are not averaged): `decay` per step, with the usual
    warm-up min(decay, (1 + t) / (10 + t)) so that early averages are not dominated by the initialisation.
    `swapped` puts the averaged weights into the model for a validation or a save and restores the raw ones."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise InputError(f"ema must be a decay between 0 and 1 (e.g. 0.999), got {decay}")
        self.decay = decay
        self.params = [p.detach() for p in model.parameters()]  # views of the live parameters
        self.shadow = [p.clone() for p in self.params]

    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, self.params, 1.0 - d)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{i}": t for i, t in enumerate(self.shadow)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        if len([k for k in tensors if k.startswith("ema.")]) != len(self.shadow):
            raise ZooError("the checkpoint holds no weight average for this run's model; it was written by a run "
                           "without ema: resume it without --ema")
        with torch.no_grad():
            for i, t in enumerate(self.shadow):
                t.copy_(tensors[f"ema.{i}"])

    @contextlib.contextmanager
    def swapped(self):
        with torch.no_grad():
            raw = [p.clone() for p in self.params]
            for p, e in zip(self.params, self.shadow):
                p.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)


class _Precision:
    """--amp: autocast to bfloat16 (CPU, and GPUs that support it) or float16 with a GradScaler (older
    GPUs); off, it changes nothing."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled, self.device_type, self.dtype, self.scaler = enabled, device.type, None, None
        if not enabled:
            return
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            self.dtype = torch.float16
            self.scaler = torch.amp.GradScaler("cuda")
        elif device.type in ("cuda", "cpu"):
            self.dtype = torch.bfloat16
        else:
            raise InputError(f"--amp supports cpu and cuda devices, not {device.type}")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.enabled else contextlib.nullcontext()

    def backward_and_step(self, loss: torch.Tensor, params: list[nn.Parameter], opt: torch.optim.Optimizer,
                          grad_clip: float | None) -> torch.Tensor | None:
        """One optimizer step; returns the gradient norm before clipping (None without clipping)."""
        norm = None
        if self.scaler is None:
            loss.backward()
            if grad_clip:
                norm = _clip(params, grad_clip)
            opt.step()
            return norm
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        if grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        return norm

    @property
    def description(self) -> str:
        return "off" if not self.enabled else str(self.dtype).removeprefix("torch.")


def fit(model: Model, train: ImageData, val: ImageData, cfg: TrainConfig, out: str | Path,
        resume: bool = False, progress: bool = True, device: str | torch.device = "cpu", amp: bool = False,
        compile: bool = False, recipe: str | None = None) -> TrainResult:
    """Train `model` into the run folder `out`, which this process holds for the run (see _fit): a second
    trainer or a --resume of the same folder while it runs is refused with a LockedError naming this one."""
    with hold_run_folder(out):
        return _fit(model, train, val, cfg, out, resume=resume, progress=progress, device=device, amp=amp,
                    compile=compile, recipe=recipe)


def _fit(model: Model, train: ImageData, val: ImageData, cfg: TrainConfig, out: str | Path,
         resume: bool = False, progress: bool = True, device: str | torch.device = "cpu", amp: bool = False,
         compile: bool = False, recipe: str | None = None) -> TrainResult:
    """Train `model` on `train`, validating on `val` each epoch; checkpoints and the best weights go to `out`.

    With resume=True a run folder's last checkpoint is restored and training continues exactly; without it
    an existing run in `out` is an error (nothing is overwritten). Inside a torch.distributed process group
    (torchrun) every rank calls fit alike and trains its share of each global batch with DDP. `amp` trains
    under autocast (see _Precision) and `compile` runs the loss through torch.compile; both are off by default.
    `recipe` (a card as TOML, what train_card passes) is written to RECIPE_FILE once the folder is this run's, so
    that tools can read a run before its card.toml exists.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    params = list(model.parameters())
    world = zdist.world_size()
    precision = _Precision(amp, device)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch  # the schedule's length; max_steps only stops early
    stop_at = total if cfg.max_steps is None else min(total, cfg.max_steps)
    # what identifies a run for --resume; settings that only stop or log it are left out, and ema, val_cfd and
    # select only when not at their defaults (so run folders written before they existed still resume)
    tc = {k: v for k, v in asdict(cfg).items()
          if k not in ("log_every", "time_budget", "val_grid", "tensorboard", "keep_epochs")
          and not (k in ("ema", "val_cfd", "init", "hflip") and not v) and not (k == "select" and v == "nll")}
    run_id = {"train_config": tc | {"max_steps": None, "epochs": None, "patience": None, "time_limit": None},
              "model_config": getattr(model, "config", {}), "train": train.describe(), "val": val.describe()}
    progress_state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_val_nll": None,
                                      "best_score": None, "best_epoch": -1, "bad_epochs": 0, "history": [],
                                      "run": run_id, "done": False}
    ema = _Ema(model, cfg.ema) if cfg.ema else None
    log = _MetricsLog(out / METRICS_FILE, enabled=zdist.is_main(), tensorboard=cfg.tensorboard)
    if (out / STATE_FILE).exists():
        if not resume:
            raise ZooError(f"{out} already holds a training run; pass --resume to continue it, or choose "
                           "another --out")
        progress_state = load_checkpoint(out, model, opt, ema)
        if progress_state["run"] != json.loads(json.dumps(run_id)):
            before, now = progress_state["run"], json.loads(json.dumps(run_id))
            changed = [k for k in now if before.get(k) != now[k]]
            detail = (f": it trained on {before.get('train')}, this run would train on {now['train']}"
                      if "train" in changed else f" (changed: {', '.join(changed)})")
            raise ZooError(f"{out}: the run there used a different model, data or training config{detail}; resume "
                           "it with the same settings (only --epochs, --patience, --max-steps and --time-limit may "
                           "change), or choose another --out")
        progress_state["done"] = False
        progress_state.setdefault("best_score", progress_state["best_val_nll"])  # folders from before --val-cfd
        progress_state.pop("stop", None)  # training continues past the last stop: its figure no longer applies
        log.truncate(progress_state["global_step"])  # records past the checkpoint are written again
    if recipe is not None and zdist.is_main() and not (out / RECIPE_FILE).exists():
        atomic_write_text(out / RECIPE_FILE, recipe)
    if progress_state.get("sized_epochs"):  # a schedule sized by --time-budget keeps its length on resume
        cfg = replace(cfg, epochs=progress_state["sized_epochs"])
        total = cfg.epochs * steps_per_epoch
        stop_at = total if cfg.max_steps is None else min(total, cfg.max_steps)
    if cfg.time_budget is not None and cfg.time_limit is None:
        cfg = replace(cfg, time_limit=cfg.time_budget * 1.1)  # the sizing's estimate, with a hard stop behind it
    sizing = (None if cfg.time_budget is None or progress_state.get("sized_epochs")
              else {"from": progress_state["global_step"] + SIZING_SKIP})
    if precision.scaler is not None and progress_state.get("grad_scaler"):
        precision.scaler.load_state_dict(progress_state["grad_scaler"])
    loss_fn: nn.Module = _LossModule(model)
    if zdist.is_initialized():
        from torch.nn.parallel import DistributedDataParallel
        loss_fn = DistributedDataParallel(loss_fn, device_ids=[device] if device.type == "cuda" else None)
    if compile:
        loss_fn = torch.compile(loss_fn)

    def checkpoint(sync: bool = True) -> None:
        if precision.scaler is not None:
            progress_state["grad_scaler"] = precision.scaler.state_dict()
        save_checkpoint(out, model, opt, progress_state, sync, extra=ema.tensors() if ema else None)

    # every rank draws the same samples (one seed), so every rank makes the same choice
    judge = _SampleJudge(model, val, cfg, out) if model.generative and (cfg.val_cfd or cfg.val_grid) else None

    def run_validation(tag: str) -> tuple[float, dict[str, Any]]:
        """The validation NLL of the weights this point would ship, and what chose them: the raw weights, or
        with ema the better of raw and averaged (both recorded) by the selection figure (NLL, or with
        select = "cfd" the classifier Frechet distance of samples). With val_cfd the samples' cfd is recorded,
        and a grid of samples is written as `samples/<tag>.png`."""
        raw = {"nll": validate(model, val, n=cfg.val_n, batch_size=cfg.eval_batch_size, distributed=True)}
        if judge is not None:
            raw.update(judge.judge(tag + ("-raw" if ema is not None else "")))
        if ema is None:
            return raw["nll"], ({"val_cfd": raw["cfd"]} if "cfd" in raw else {})
        with ema.swapped():
            avg = {"nll": validate(model, val, n=cfg.val_n, batch_size=cfg.eval_batch_size, distributed=True)}
            if judge is not None:
                avg.update(judge.judge(tag + "-ema"))
        key = cfg.select
        pick, name = (avg, "ema") if avg[key] <= raw[key] else (raw, "raw")
        info = {"val_raw": raw["nll"], "val_ema": avg["nll"], "weights": name}
        if "cfd" in pick:
            info.update(val_cfd=pick["cfd"], val_cfd_raw=raw["cfd"], val_cfd_ema=avg["cfd"])
        return pick["nll"], info

    def score(val_nll: float, info: dict[str, Any]) -> float:
        """The figure that chooses the shipped checkpoint (lower is better)."""
        return info["val_cfd"] if cfg.select == "cfd" else val_nll

    def save_shipped(path: Path, info: dict[str, Any]) -> None:
        if not zdist.is_main():
            return
        ctx = ema.swapped() if ema is not None and info.get("weights") == "ema" else contextlib.nullcontext()
        with ctx:
            save_weights(model.state_dict(), path)

    def out_of_time() -> bool:
        # rank 0's clock (and its view of the folder) decides, so that every rank stops at the same step
        late = cfg.time_limit is not None and time.time() - started > cfg.time_limit
        asked = (out / STOP_REQUEST).exists()
        if not zdist.broadcast_flag(late or asked):
            return False
        if asked and zdist.is_main():
            (out / STOP_REQUEST).unlink(missing_ok=True)  # once: a --resume continues
        reason[0] = f"time limit of {cfg.time_limit:.0f} s reached" if late else f"stop requested ({STOP_REQUEST})"
        return True

    reason = [""]
    recheck: dict[str, float] | None = None  # set once this process has sized the schedule (--time-budget)

    def set_epochs(epochs: int) -> None:
        """--time-budget: the schedule's new length, kept in the run's state (a resumed run keeps it)."""
        nonlocal cfg, total, stop_at
        cfg = replace(cfg, epochs=epochs)
        total = cfg.epochs * steps_per_epoch
        stop_at = total if cfg.max_steps is None else min(total, cfg.max_steps)
        progress_state.update(sized_epochs=epochs, epochs=epochs, total_steps=total)
        bar.resize(stop_at)

    # what `zoo runs` needs to tell progress and an ETA from the folder alone
    progress_state.update(steps_per_epoch=steps_per_epoch, total_steps=total, epochs=cfg.epochs,
                          batch_size=cfg.batch_size)
    bar = _Bar(progress and zdist.is_main(), stop_at, progress_state["global_step"])
    if progress_state["global_step"]:
        bar.log(f"resuming {out} from step {progress_state['global_step']} of {stop_at} (epoch "
                f"{progress_state['epoch'] + 1}, step {progress_state['step_in_epoch']} of {steps_per_epoch} in it)")
    loss_ema = progress_state.get("loss_ema")  # kept in the checkpoint: a resumed run logs what one run would
    stopped_early = timed_out = False
    started = time.time()
    tick, tick_step = time.time(), progress_state["global_step"]
    try:
        while progress_state["epoch"] < cfg.epochs and progress_state["global_step"] < stop_at:
            epoch = progress_state["epoch"]
            order = torch.randperm(len(train), generator=_seeded(cfg.seed, 1, epoch))
            model.train()
            for b in range(progress_state["step_in_epoch"], steps_per_epoch):
                step = progress_state["global_step"]
                if step >= stop_at:
                    break
                gen = _seeded(cfg.seed, 2, step)
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                # every rank draws the whole global batch (so the generator is in the same state as in one
                # process when the family draws from it next), then keeps its slice
                x, y = train.batch(idx, generator=gen)
                if cfg.hflip:
                    x = hflip_half(x, gen)
                lo, hi = zdist.shard(len(idx))
                x = x[lo:hi].to(device)
                y = y[lo:hi].to(device) if model.num_classes else None
                for group in opt.param_groups:
                    group["lr"] = cfg.lr_at(step, total)
                with precision.autocast():
                    # DDP averages gradients over ranks: weighting by the slice's share makes it the gradient
                    # of the global batch's mean loss (the weight is exactly 1 in one process)
                    loss = loss_fn(x, y, gen, (hi - lo) * world / len(idx))
                batch_loss = (zdist.all_reduce_sum(loss.detach().float()) / world).item()
                if not math.isfinite(batch_loss):
                    raise ZooError(f"training diverged at step {step} (loss {batch_loss}); lower --lr. The last "
                                   f"good checkpoint in {out} is kept")
                opt.zero_grad(set_to_none=True)
                grad_norm = precision.backward_and_step(loss, params, opt, cfg.grad_clip)
                if ema is not None:
                    ema.update(step)
                loss_ema = batch_loss if loss_ema is None else 0.98 * loss_ema + 0.02 * batch_loss
                progress_state["global_step"] = step + 1
                progress_state["loss_ema"] = loss_ema
                progress_state["step_in_epoch"] = b + 1
                bar.update(step + 1, f"epoch {epoch + 1}/{cfg.epochs}  loss {loss_ema:.4g}")
                if sizing is not None and step + 1 == sizing["from"]:
                    sizing["t"] = time.time()
                elif sizing is not None and step + 1 == sizing["from"] + SIZING_STEPS:
                    rate = SIZING_STEPS / max(time.time() - sizing["t"], 1e-9)
                    left = cfg.time_budget - (time.time() - started)
                    fit_steps = step + 1 + rate * SIZING_SHARE * max(left, 0.0)
                    # rank 0's clock decides for every rank: ranks with different schedules would wait on each other
                    epochs = zdist.broadcast_int(max(epoch + 1, min(cfg.epochs, int(fit_steps // steps_per_epoch))))
                    set_epochs(epochs)
                    sizing, recheck = None, {}
                    bar.log(f"time budget {cfg.time_budget:.0f} s: {rate:.1f} steps/s measured, so the schedule is "
                            f"sized to {epochs} epochs ({total} steps)")
                if cfg.log_every and (step + 1) % cfg.log_every == 0:
                    now = time.time()
                    log.write({"step": step + 1, "epoch": epoch + 1, "loss": batch_loss, "loss_avg": loss_ema,
                               "lr": opt.param_groups[0]["lr"],
                               "grad_norm": None if grad_norm is None else float(grad_norm),
                               "images_per_s": (step + 1 - tick_step) * cfg.batch_size / max(now - tick, 1e-9),
                               "threads": torch.get_num_threads(), "processes": zdist.world_size(), "time": now})
                    tick, tick_step = now, step + 1
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                    checkpoint()
                    if b + 1 < steps_per_epoch and out_of_time():
                        bar.log(f"{reason[0]} at step {step + 1} (a checkpoint, mid-epoch {epoch + 1}); continue "
                                "later with --resume")
                        timed_out = True
                        break
            if timed_out or progress_state["step_in_epoch"] < steps_per_epoch:
                break  # max_steps or the time limit reached mid-epoch
            val_nll, val_info = run_validation(f"epoch-{epoch + 1:03d}")
            if cfg.keep_epochs:  # the weights this epoch would ship, for FID per epoch (scripts/learning_curve.py)
                save_shipped(out / EPOCHS_DIR / f"epoch-{epoch + 1:03d}.safetensors", val_info)
            model.train()
            record = {"epoch": epoch + 1, "step": progress_state["global_step"], "train_loss": loss_ema,
                      "val_nll": val_nll, **val_info}
            progress_state["history"].append(record)
            log.write({"val": True, **record, "time": time.time()})
            best = progress_state["best_score"]
            if best is None or score(val_nll, val_info) < best:
                progress_state.update(best_val_nll=val_nll, best_score=score(val_nll, val_info),
                                      best_epoch=epoch + 1, bad_epochs=0)
                save_shipped(out / BEST_FILE, val_info)
            else:
                progress_state["bad_epochs"] += 1
            bar.log(f"epoch {epoch + 1}: train loss {_fmt(loss_ema)}  {model.val_metric[0]} {val_nll:.4g} "
                    f"{model.val_metric[1]}{_ema_note(val_info)}"
                    f"{'  (best)' if progress_state['best_epoch'] == epoch + 1 else ''}")
            progress_state["epoch"] = epoch + 1
            progress_state["step_in_epoch"] = 0
            if recheck is not None:  # --time-budget: whole epochs timed since the sizing, validation included
                if "t" not in recheck:
                    recheck.update(t=time.time(), epoch=epoch + 1)
                else:
                    per_epoch = (time.time() - recheck["t"]) / (epoch + 1 - recheck["epoch"])
                    epochs = zdist.broadcast_int(resized_epochs(epoch + 1, cfg.epochs, per_epoch,
                                                                cfg.time_budget - (time.time() - started)))
                    if epochs < cfg.epochs:
                        set_epochs(epochs)
                        bar.log(f"time budget {cfg.time_budget:.0f} s: an epoch takes {per_epoch:.0f} s here "
                                f"(validation included), slower than sized, so the schedule is now {epochs} epochs "
                                f"({total} steps)")
            if cfg.patience is not None and progress_state["bad_epochs"] >= cfg.patience:
                stopped_early = True
                progress_state["epoch"] = cfg.epochs
            checkpoint()
            if out_of_time():
                bar.log(f"{reason[0]} after epoch {epoch + 1}; continue later with --resume")
                break
    except KeyboardInterrupt as e:
        checkpoint(sync=False)
        bar.close()  # the last progress line first, then one message (the CLI does not repeat it)
        bar.log(f"interrupted: checkpoint saved at step {progress_state['global_step']}; continue with --resume")
        e.reported = True  # type: ignore[attr-defined]
        raise
    finally:
        bar.close()
        log.close()
    step = progress_state["global_step"]
    last_validated = progress_state["history"][-1]["step"] if progress_state["history"] else 0
    if step > last_validated:
        # stopped mid-epoch (max_steps, time limit): the steps since the last validation were trained, so they are
        # validated too, and the better of these weights and the best epoch's is what this stop ships. The figure
        # stays out of the epoch history (and out of early stopping), so a run continued later with --resume
        # selects among its epochs exactly as a run that was never stopped.
        val_nll, val_info = run_validation(f"stop-step-{step:07d}")
        progress_state["stop"] = {"step": step, "epoch": progress_state["epoch"], "val_nll": val_nll,
                                  "score": score(val_nll, val_info), **val_info}
        log.write({"val": True, "stop": True, "step": step, "val_nll": val_nll, **val_info, "time": time.time()})
        save_shipped(out / STOP_FILE, val_info)
        bar.log(f"stopped at step {step}, mid-epoch {progress_state['epoch'] + 1}: {model.val_metric[0]} "
                f"{val_nll:.4g} {model.val_metric[1]}{_ema_note(val_info)}")
    checkpoint()
    return _result(progress_state, out, stopped_early)


def resized_epochs(done: int, epochs: int, per_epoch_s: float, left_s: float) -> int:
    """A --time-budget schedule re-checked after `done` epochs: the epochs that still fit in `left_s` seconds at
    `per_epoch_s` each, never more than the `epochs` already planned (a schedule only shortens: its learning rate
    has already decayed for that length) and never fewer than those done. The first sizing times 100 early steps;
    a machine that slows later (another job starts) would otherwise run into the hard stop at 1.1x the budget
    with its learning rate still high."""
    return max(done, min(epochs, done + int(max(left_s, 0.0) // max(per_epoch_s, 1e-9))))


def _result(state: dict[str, Any], out: Path, stopped_early: bool) -> TrainResult:
    """What a stop ships: the best epoch's weights, or the weights at the stop when it came mid-epoch and
    validates better (or no epoch has ended yet)."""
    best, stop = state.get("best_score", state["best_val_nll"]), state.get("stop")
    if stop is not None and (best is None or stop.get("score", stop["val_nll"]) < best):
        return TrainResult(stop["val_nll"], -1, state["history"], state["global_step"], stopped_early,
                           weights=out / STOP_FILE, best_step=stop["step"], sized_epochs=state.get("sized_epochs"),
                           val_cfd=stop.get("val_cfd"))
    shipped = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    nll = state["best_val_nll"]
    return TrainResult(nll if nll is not None else float("nan"), state["best_epoch"], state["history"],
                       state["global_step"], stopped_early, weights=out / BEST_FILE, best_step=shipped.get("step", 0),
                       sized_epochs=state.get("sized_epochs"), val_cfd=shipped.get("val_cfd"))


def _folder_card(card, folder: str | Path):
    """The card, model and splits for training a card's architecture on an image folder: the model keeps the
    card's image shape and levels; a class-conditional one gets the folder's classes. The card is renamed
    `<id>-<folder>` and its [data] describes the folder (name, images, classes, preprocessing, content hash).
    Every image is decoded here, before any run folder is touched."""
    from .api import create
    from .datasets import FOLDER_DATASET
    from .errors import DataError
    from .image_folder import PREPROCESSING, load_folder, scan, slug

    model = create(card.architecture, **card.config)
    f = scan(folder)
    config = dict(card.config)
    if model.num_classes:
        if not f.conditional or len(f.classes) < 2:
            got = f"one class subfolder ('{f.classes[0]}')" if f.classes else "no class subfolders"
            raise DataError(f"{card.id} is class-conditional ({model.num_classes} classes), but {f.root} has {got}; "
                            "give it one subfolder per class (at least 2), or train an unconditional card")
        if "num_classes" not in config:
            raise DataError(f"{card.id} is class-conditional but its config has no num_classes to set to the "
                            f"folder's {len(f.classes)} classes")
        config["num_classes"] = len(f.classes)
        model = create(card.architecture, **config)
    levels = int(getattr(model.tokenizer, "levels", 256))
    shape = tuple(int(s) for s in model.image_shape)
    train = load_folder(f, "train", shape, levels)
    val = load_folder(f, "val", shape, levels)
    quant = {2: "binarized (Bernoulli, as mnist-bin)", 256: "8-bit"}.get(levels, f"quantized to {levels} levels")
    data = {"dataset": FOLDER_DATASET, "folder": f.name, "images": len(f.files), "classes": list(f.classes),
            "labels_used": bool(model.num_classes), "content_sha256": f.sha256,
            "preprocessing": f"{PREPROCESSING}; fitted to {shape[0]}x{shape[1]}x{shape[2]}, {quant}",
            "trained_from": card.id}
    base = card.data.get("trained_from", card.id) if card.dataset == FOLDER_DATASET else card.id
    data["trained_from"] = base
    new = replace(card, id=f"{base}-{slug(f.name)}"[:100].rstrip("-._"), dataset=FOLDER_DATASET, data=data,
                  config=config, description=f"the {card.architecture} architecture of {base}, trained on the image "
                                             f"folder '{f.name}' ({len(f.files):,} images)")
    return new, model, train, val


def _ema_note(info: dict[str, Any]) -> str:
    cfd = f"  val_cfd {info['val_cfd']:.4g}" if "val_cfd" in info else ""
    if "val_raw" not in info:
        return cfd
    if "val_cfd_raw" in info:
        return (f"{cfd} (raw {info['val_raw']:.4g} / cfd {info['val_cfd_raw']:.4g}, averaged {info['val_ema']:.4g}"
                f" / cfd {info['val_cfd_ema']:.4g}: ships {info['weights']})")
    return f"{cfd} (raw {info['val_raw']:.4g}, averaged {info['val_ema']:.4g}: ships {info['weights']})"


class _SampleJudge:
    """What a validation looks at besides the NLL: a grid of samples written to the run folder (`samples/`), and
    with val_cfd the classifier Frechet distance of val_cfd samples to the validation split (zoo.evaluate.cfd's
    feature space; the split's features are computed once). Samples are drawn with the run's seed, so every
    validation of a run, and every rank, draws from the same noise."""

    def __init__(self, model: Model, val: ImageData, cfg: TrainConfig, out: Path) -> None:
        self.model, self.cfg, self.folder, self.dataset = model, cfg, out / "samples", val.name
        self.reference = None
        if cfg.val_cfd:
            from .evaluate import classifier_features
            self.reference = classifier_features(val, val.name)  # checks a classifier exists before training

    @torch.no_grad()
    def judge(self, tag: str) -> dict[str, float]:
        from .evaluate import classifier_features, frechet
        was_training = self.model.training
        self.model.eval()
        n = max(self.cfg.val_cfd, self.cfg.val_grid)
        y = "uniform" if self.model.num_classes else None  # a class-conditional model: every class alike
        x = self.model.sample(n, seed=self.cfg.seed, preset=False, y=y, batch_size=min(n, 500)).cpu()
        self.model.train(was_training)
        out: dict[str, float] = {}
        if self.cfg.val_grid and zdist.is_main():
            from .grid import make_grid, save_image
            self.folder.mkdir(exist_ok=True)
            save_image(make_grid(x[:self.cfg.val_grid]), self.folder / f"{tag}.png")
        if self.cfg.val_cfd:
            out["cfd"] = frechet(classifier_features(x[:self.cfg.val_cfd], self.dataset), self.reference)
        return out


_NOT_FIGURES = ("step", "time", "epoch", "threads", "processes")  # metrics.jsonl keys that are no curve


class _MetricsLog:
    """The run folder's metrics.jsonl: one JSON record per `log_every` steps (step, loss, learning rate, gradient
    norm, images/s) and one per validation (`"val": true`), appended as training goes, so a run can be watched
    (`zoo runs`) and plotted while it trains."""

    def __init__(self, path: Path, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path, self.enabled = path, enabled
        self.board = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise InputError("--tensorboard needs the tensorboard package: pip install 'ar-zoo[tensorboard]' "
                                 f"(or pip install tensorboard); {e}") from None
            self.board = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.board is not None:  # the same figures as TensorBoard scalars, by global step
            group = "val" if record.get("val") else "train"
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_FIGURES:
                    self.board.add_scalar(f"{group}/{k}", v, record.get("step", 0))
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()

    def truncate(self, step: int) -> None:
        """Drop the records past `step` (a resumed run writes them again from its checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and _record_step(ln) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 1 << 62  # an unreadable line (a torn write) is dropped


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def with_recon_metrics(card, r, command: str, note: str, split: str = "test"):
    """The card with a tokenizer's reconstruction figures (kept for callers of 0.1: use zoo.records.record_recon)."""
    import warnings

    from .records import record_recon
    warnings.warn("zoo.train.with_recon_metrics is deprecated: use zoo.records.record_recon (zoo 0.2)",
                  DeprecationWarning, stacklevel=2)
    return record_recon(card, r, command, note, split)


INIT_FILE = "init.json"  # a run started with --init: the source and its sha256, for the card of a resumed run


def _init_weights(model: Model, card, ref: str, out: Path, resume: bool) -> str:
    """--init: load `ref`'s weights into a new run's model and note their sha256 in the run folder; a resumed
    run's checkpoint holds its weights, so it only reads the note (the source may have changed since)."""
    note = out / INIT_FILE
    if (out / STATE_FILE).exists():  # resumed (or refused by fit: nothing of the existing run is touched)
        return json.loads(note.read_text())["sha256"] if resume and note.is_file() else _start_from(model, card, ref)
    sha = _start_from(model, card, ref)
    if zdist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({"init": ref, "sha256": sha}) + "\n")
    return sha


def _start_from(model: Model, card, ref: str) -> str:
    """Load the weights of `ref` (a model id, a `zoo train` run folder, `hf://org/name`) into `model` before
    training: a warm start with a fresh schedule, e.g. more epochs for a shipped card whose cosine schedule ended.
    The architecture must be the card's and every tensor's shape the model's. Returns the weights' sha256."""
    from .api import card_of, load
    source = card_of(ref)
    if source.architecture != card.architecture:
        raise InputError(f"--init {ref}: its architecture is {source.architecture}, this run trains "
                         f"{card.architecture}; start from a model of the same architecture and config")
    try:
        state = load(ref).state_dict()
    except ZooError as e:
        raise InputError(f"--init {ref}: {e}") from e
    load_into(model, {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
              f"--init {ref}")
    return source.sha256


def train_card(card, out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False,
               data_dir: str | Path | None = None, download: bool = False, device: str = "cpu", progress: bool = True,
               eval_test: bool = True, amp: bool = False, compile: bool = False, data: str | Path | None = None,
               command: str | None = None):
    """Train the model a card describes into `out` (see _train_card), holding the run folder from the start
    to the written card: one process per run folder (rank 0 holds it for a torchrun job)."""
    with hold_run_folder(out):
        return _train_card(card, out, overrides, resume=resume, data_dir=data_dir, download=download,
                           device=device, progress=progress, eval_test=eval_test, amp=amp, compile=compile,
                           data=data, command=command)


def _train_card(card, out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False,
                data_dir: str | Path | None = None, download: bool = False, device: str = "cpu",
                progress: bool = True, eval_test: bool = True, amp: bool = False, compile: bool = False,
                data: str | Path | None = None, command: str | None = None):
    """Train the model a card describes on its dataset, or with `data` on that image folder instead (see
    zoo.image_folder); write `<id>.safetensors` and `card.toml` (with the validation and test NLL) into `out`.
    Returns (card, TrainResult). Under torchrun every rank calls it; rank 0 writes the files. `command` is the
    command line that ran (the CLI passes it), recorded with the validation figure; without it the card gets an
    equivalent `zoo train` line built from the arguments (zoo.records.train_command)."""
    from .api import create
    from .cards import Metric, dump_card, with_metric, write_card
    from .data import load_dataset
    from .records import eval_command, record_nll, record_recon, train_command

    recipe = {k: v for k, v in card.training.items() if k != "run"}
    cfg = TrainConfig.from_dict({**recipe, **(overrides or {})})
    torch.manual_seed(cfg.seed)
    source = card.id
    if data is not None:
        if data_dir is not None or download:
            raise InputError("--data DIR trains on that image folder; --data-dir and --download are for named "
                             "datasets: give one or the other")
        card, model, train, val = _folder_card(card, data)
    else:
        model = create(card.architecture, **card.config)
        train = load_dataset(card.dataset, "train", data_dir, download)
        val = load_dataset(card.dataset, "val", data_dir, download)
    model.before_training()
    out = Path(out)
    init_sha = _init_weights(model, card, cfg.init, out, resume) if cfg.init else None
    # the recipe as trained (the card's, with this run's overrides); options that only stop or log a run are no part
    trained = {k: v for k, v in asdict(cfg).items()
               if (k in recipe or (k in (overrides or {}) and k not in ("max_steps", "time_limit")))
               and k not in ("time_budget", "tensorboard", "init", "keep_epochs")}
    result = fit(model, train, val, cfg, out, resume=resume, progress=progress, device=zdist.rank_device(device),
                 amp=amp, compile=compile, recipe=dump_card(replace(card, path=None, metrics=[], training=trained)))
    load_into(model, load_weights(result.weights), str(result.weights))
    weights_file = f"{card.id}.safetensors"
    sha = save_weights(model.state_dict(), out / weights_file) if zdist.is_main() else ""
    new = replace(card, weights_file=weights_file, sha256=sha, path=None, metrics=[], params=model.num_params,
                  training=dict(trained))
    if result.sized_epochs:  # what --time-budget chose is the recipe's length from now on
        new.training["epochs"] = result.sized_epochs
    stops = {k: v for k, v in (overrides or {}).items() if k in ("max_steps", "time_limit", "time_budget")}
    new.training["run"] = {"device": str(device), "best_epoch": result.best_epoch, "best_step": result.best_step,
                           "steps": result.global_step, "epochs_done": len(result.history), **stops}
    if init_sha:  # provenance, not a recipe key: the card trained from it would start from its own new weights
        new.training["run"].update(init=cfg.init, init_sha256=init_sha)
    if zdist.world_size() > 1:
        new.training["run"]["processes"] = zdist.world_size()
    if amp or compile:
        new.training["run"].update({k: True for k, on in (("amp", amp), ("compile", compile)) if on})
    new.data = {**card.data, "train": train.describe(), "val": val.describe(), "copy": train.copy}
    if data is not None:
        new.data["split"] = SPLIT_RULE
    val_name, val_unit = model.val_metric
    if command is None:
        command = train_command(source, overrides, device=device, amp=amp, compile=compile, data=data)
    new = with_metric(new, Metric(val_name, round(result.best_val_nll, 6), val_unit, "val",
                                  min(cfg.val_n or len(val), len(val)), command,
                                  f"validation figure of the shipped weights, {result.when}"
                                  + (f"; {val.describe()}; the held-out share also chose the best epoch"
                                     if data is not None else "")))
    if result.val_cfd is not None:
        new = with_metric(new, Metric("val_cfd", round(result.val_cfd, 4), "CFD", "val", cfg.val_cfd, command,
                                      f"classifier Frechet distance of {cfg.val_cfd:,} samples (seed {cfg.seed}, "
                                      f"temperature 1) to the whole validation split, {result.when}"))
    if eval_test:
        # an image folder has no test split: its figures are on the held-out share, by `zoo eval --data`
        split, ref = ("val", f"local-dir:{out}") if data is not None else ("test", card.id)
        test = val if data is not None else load_dataset(card.dataset, "test", data_dir, download)
        data_name = Path(data).name if data is not None else None
        if model.generative:
            r = nll(model.eval(), test, batch_size=cfg.eval_batch_size, distributed=True)
            new = record_nll(new, ref, r, split, None, test.describe(),
                             command=eval_command(ref, "nll", split=split, data=data_name))
        else:
            new = record_recon(new, reconstruction(model.eval(), test, batch_size=cfg.eval_batch_size),
                               eval_command(ref, "recon", split=split, data=data_name), test.describe(), split)
    if zdist.is_main():
        write_card(new, out / "card.toml")
    zdist.barrier()
    return new, result
