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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed as zdist
from .data import ImageData
from .errors import InputError, ZooError
from .evaluate import nll, reconstruction, validate
from .locking import hold_run_folder
from .model import Model
from .weights import load_weights, save_weights

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

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
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InputError(f"unknown optimizer '{cfg.optimizer}'; use adam or adamw")


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
                    sync: bool = True) -> None:
    """Write weights + optimizer as safetensors and the progress as JSON, atomically: the state file is
    replaced last and names its checkpoint, so a crash at any point leaves the previous one intact.
    Under torchrun rank 0 writes and, with sync, the other ranks wait for it."""
    if zdist.is_main():
        _write_checkpoint(out, model, opt, progress)
    if sync:
        zdist.barrier()


def _write_checkpoint(out: Path, model: Model, opt: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
    step = progress["global_step"]
    name = f"checkpoint-{step:08d}.safetensors"
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors
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


def load_checkpoint(out: Path, model: Model, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from the run folder's last good checkpoint; returns the progress."""
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
    return state


# ---- the loop -------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a run produced: the best validation NLL, its epoch, and the per-epoch history."""

    best_val_nll: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    global_step: int = 0
    stopped_early: bool = False


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
                                 TimeElapsedColumn(), TimeRemainingColumn())
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
                          grad_clip: float | None) -> None:
        if self.scaler is None:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(opt)
        self.scaler.update()

    @property
    def description(self) -> str:
        return "off" if not self.enabled else str(self.dtype).removeprefix("torch.")


def fit(model: Model, train: ImageData, val: ImageData, cfg: TrainConfig, out: str | Path,
        resume: bool = False, progress: bool = True, device: str | torch.device = "cpu", amp: bool = False,
        compile: bool = False) -> TrainResult:
    """Train `model` into the run folder `out`, which this process holds for the run (see _fit): a second
    trainer or a --resume of the same folder while it runs is refused with a LockedError naming this one."""
    with hold_run_folder(out):
        return _fit(model, train, val, cfg, out, resume=resume, progress=progress, device=device, amp=amp,
                    compile=compile)


def _fit(model: Model, train: ImageData, val: ImageData, cfg: TrainConfig, out: str | Path,
         resume: bool = False, progress: bool = True, device: str | torch.device = "cpu", amp: bool = False,
         compile: bool = False) -> TrainResult:
    """Train `model` on `train`, validating on `val` each epoch; checkpoints and the best weights go to `out`.

    With resume=True a run folder's last checkpoint is restored and training continues exactly; without it
    an existing run in `out` is an error (nothing is overwritten). Inside a torch.distributed process group
    (torchrun) every rank calls fit alike and trains its share of each global batch with DDP. `amp` trains
    under autocast (see _Precision) and `compile` runs the loss through torch.compile; both are off by default.
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
    run_id = {"train_config": asdict(cfg) | {"max_steps": None, "epochs": None, "patience": None,
                                             "time_limit": None},
              "model_config": getattr(model, "config", {}), "train": train.describe(), "val": val.describe()}
    progress_state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_val_nll": None,
                                      "best_epoch": -1, "bad_epochs": 0, "history": [], "run": run_id,
                                      "done": False}
    if (out / STATE_FILE).exists():
        if not resume:
            raise ZooError(f"{out} already holds a training run; pass --resume to continue it, or choose "
                           "another --out")
        progress_state = load_checkpoint(out, model, opt)
        if progress_state["run"] != json.loads(json.dumps(run_id)):
            raise ZooError(f"{out}: the run there used a different model, data or training config; resume it "
                           "with the same settings (only --epochs and --patience may change), or choose another --out")
        progress_state["done"] = False
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
        save_checkpoint(out, model, opt, progress_state, sync)

    def run_validation() -> float:
        return validate(model, val, n=cfg.val_n, batch_size=cfg.eval_batch_size, distributed=True)

    bar = _Bar(progress and zdist.is_main(), stop_at, progress_state["global_step"])
    loss_ema = progress_state.get("loss_ema")  # kept in the checkpoint: a resumed run logs what one run would
    stopped_early = False
    started = time.time()
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
                precision.backward_and_step(loss, params, opt, cfg.grad_clip)
                loss_ema = batch_loss if loss_ema is None else 0.98 * loss_ema + 0.02 * batch_loss
                progress_state["global_step"] = step + 1
                progress_state["loss_ema"] = loss_ema
                progress_state["step_in_epoch"] = b + 1
                bar.update(step + 1, f"epoch {epoch + 1}/{cfg.epochs}  loss {loss_ema:.4g}")
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                    checkpoint()
            if progress_state["step_in_epoch"] < steps_per_epoch:
                break  # max_steps reached mid-epoch
            val_nll = run_validation()
            model.train()
            record = {"epoch": epoch + 1, "step": progress_state["global_step"], "train_loss": loss_ema,
                      "val_nll": val_nll}
            progress_state["history"].append(record)
            best = progress_state["best_val_nll"]
            if best is None or val_nll < best:
                progress_state.update(best_val_nll=val_nll, best_epoch=epoch + 1, bad_epochs=0)
                if zdist.is_main():
                    save_weights(model.state_dict(), out / BEST_FILE)
            else:
                progress_state["bad_epochs"] += 1
            bar.log(f"epoch {epoch + 1}: train loss {_fmt(loss_ema)}  {model.val_metric[0]} {val_nll:.4g} "
                    f"{model.val_metric[1]}"
                    f"{'  (best)' if progress_state['best_epoch'] == epoch + 1 else ''}")
            progress_state["epoch"] = epoch + 1
            progress_state["step_in_epoch"] = 0
            if cfg.patience is not None and progress_state["bad_epochs"] >= cfg.patience:
                stopped_early = True
                progress_state["epoch"] = cfg.epochs
            checkpoint()
            # rank 0's clock decides, so that every rank stops after the same epoch
            if cfg.time_limit is not None and zdist.broadcast_flag(time.time() - started > cfg.time_limit):
                bar.log(f"time limit of {cfg.time_limit:.0f} s reached after epoch {epoch + 1}; "
                        "continue later with --resume")
                break
    except KeyboardInterrupt:
        checkpoint(sync=False)
        bar.log(f"interrupted: checkpoint saved at step {progress_state['global_step']}; continue with --resume")
        raise
    finally:
        bar.close()
    if progress_state["best_val_nll"] is None and progress_state["global_step"]:
        # stopped before the first epoch ended (max_steps): validate what we have
        progress_state.update(best_val_nll=run_validation(), best_epoch=progress_state["epoch"])
        if zdist.is_main():
            save_weights(model.state_dict(), out / BEST_FILE)
    checkpoint()
    return TrainResult(progress_state["best_val_nll"] if progress_state["best_val_nll"] is not None else float("nan"),
                       progress_state["best_epoch"], progress_state["history"], progress_state["global_step"],
                       stopped_early)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def with_recon_metrics(card, r, command: str, note: str, split: str = "test"):
    """The card with a tokenizer's reconstruction figures (PSNR, codebook usage) and their command."""
    from .cards import Metric, with_metric
    card = with_metric(card, Metric("psnr", round(r.psnr, 3), "dB", split, r.n, command, note))
    return with_metric(card, Metric("codebook_usage", round(r.usage, 4), "fraction of codes", split, r.n, command,
                                    f"{r.codes_used} of {r.codebook_size} codes used"))


def train_card(card, out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False,
               data_dir: str | Path | None = None, download: bool = False, device: str = "cpu", progress: bool = True,
               eval_test: bool = True, amp: bool = False, compile: bool = False):
    """Train the model a card describes into `out` (see _train_card), holding the run folder from the start
    to the written card: one process per run folder (rank 0 holds it for a torchrun job)."""
    with hold_run_folder(out):
        return _train_card(card, out, overrides, resume=resume, data_dir=data_dir, download=download,
                           device=device, progress=progress, eval_test=eval_test, amp=amp, compile=compile)


def _train_card(card, out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False,
                data_dir: str | Path | None = None, download: bool = False, device: str = "cpu",
                progress: bool = True, eval_test: bool = True, amp: bool = False, compile: bool = False):
    """Train the model a card describes on its dataset; write `<id>.safetensors` and `card.toml` (with the
    validation and test NLL) into `out`. Returns (card, TrainResult). Under torchrun every rank calls it;
    rank 0 writes the files."""
    from dataclasses import replace

    from .api import create
    from .cards import Metric, with_metric, write_card
    from .data import load_dataset
    from .weights import load_into

    recipe = {k: v for k, v in card.training.items() if k != "run"}
    cfg = TrainConfig.from_dict({**recipe, **(overrides or {})})
    torch.manual_seed(cfg.seed)
    model = create(card.architecture, **card.config)
    model.before_training()
    train = load_dataset(card.dataset, "train", data_dir, download)
    val = load_dataset(card.dataset, "val", data_dir, download)
    out = Path(out)
    result = fit(model, train, val, cfg, out, resume=resume, progress=progress, device=zdist.rank_device(device),
                 amp=amp, compile=compile)
    load_into(model, load_weights(out / BEST_FILE), str(out / BEST_FILE))
    weights_file = f"{card.id}.safetensors"
    sha = save_weights(model.state_dict(), out / weights_file) if zdist.is_main() else ""
    new = replace(card, weights_file=weights_file, sha256=sha, path=None, metrics=[],
                  training={k: v for k, v in asdict(cfg).items()
                            if k in recipe or (k in (overrides or {}) and k not in ("max_steps", "time_limit"))})
    stops = {k: v for k, v in (overrides or {}).items() if k in ("max_steps", "time_limit")}
    new.training["run"] = {"device": str(device), "best_epoch": result.best_epoch, "steps": result.global_step,
                           "epochs_done": len(result.history), **stops}
    if zdist.world_size() > 1:
        new.training["run"]["processes"] = zdist.world_size()
    if amp or compile:
        new.training["run"].update({k: True for k, on in (("amp", amp), ("compile", compile)) if on})
    new.data = {**card.data, "train": train.describe(), "val": val.describe(), "copy": train.copy}
    val_name, val_unit = model.val_metric
    new = with_metric(new, Metric(val_name, round(result.best_val_nll, 6), val_unit, "val",
                                  min(cfg.val_n or len(val), len(val)),
                                  " ".join([f"zoo train {card.id}"] + [f"--{k.replace('_', '-')} {v:g}"
                                                                       for k, v in stops.items()]
                                           + ([f"--device {device}"] if str(device) != "cpu" else [])
                                           + (["--amp"] if amp else [])),
                                  "best epoch's validation figure"))
    if eval_test:
        test = load_dataset(card.dataset, "test", data_dir, download)
        if model.generative:
            r = nll(model.eval(), test, batch_size=cfg.eval_batch_size, distributed=True)
            new = with_metric(new, Metric("nll", round(r.nats, 4), "nats/image", "test", r.n,
                                          f"zoo eval {card.id} --nll", test.describe()))
        else:
            new = with_recon_metrics(new, reconstruction(model.eval(), test, batch_size=cfg.eval_batch_size),
                                     f"zoo eval {card.id} --recon", test.describe())
    if zdist.is_main():
        write_card(new, out / "card.toml")
    zdist.barrier()
    return new, result
