"""The training loop: a run's set-up, its iterations in small steps, checkpoints, the result.

`train` checks the items, builds the network and optimiser (or takes them from a
checkpoint), then repeats one step per mini-batch: learning rate, forward,
backward, validation and history when due, a checkpoint every few minutes.
The progress a checkpoint carries is a `TrainState`; the rest of a run (network,
optimiser, schedule, data) is a `_Run`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np

from ..errors import InvalidInputError, MidsegError
from ..io import file_sha256, write_json_atomic
from .card import _make_card
from .checkpoint import _atomic_save, _init_from, _load_checkpoint
from .config import TrainConfig, TrainItem, TrainResult, _cfg_key, _with_defaults, lr_at
from .samples import _SampleStream
from .synthetic import synthetic_items
from .validation import _loss, _make_val_cases, _validate


@dataclass
class TrainState:
    """The progress of a run: what a checkpoint carries besides weights and optimiser.

    ``iteration``: iterations done; ``history``: one record per validation (also
    the card's ``training.history``); ``elapsed``: training seconds so far;
    ``best``: with ``keep_best``, the iteration, Dice and weights of the best
    validation; ``init``: what the card records about the starting model; ``ema``: the
    moving average of the training loss (so a resumed run's history equals a straight one's).
    """

    iteration: int = 0
    history: list = field(default_factory=list)
    elapsed: float = 0.0
    best: dict | None = None
    init: dict | None = None
    ema: float | None = None  # the training loss's moving average

    def to_dict(self) -> dict:
        """The plain dict a checkpoint stores (tensors and plain data only)."""
        return {
            "iteration": self.iteration,
            "history": self.history,
            "elapsed": self.elapsed,
            "best": self.best,
            "init": self.init,
            "ema": self.ema,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """The state of a checkpoint's dict (``init`` missing in older ones)."""
        return cls(
            iteration=d["iteration"],
            history=d["history"],
            elapsed=d["elapsed"],
            best=d.get("best"),
            init=d.get("init"),
            ema=d.get("ema"),
        )

    def remember_best(self, net, dice: float, keep: bool) -> None:
        """With `keep`, copy the weights of `net` when `dice` beats the best so far."""
        if not keep or not np.isfinite(dice):
            return
        if self.best is None or dice > self.best["val_dice"]:
            self.best = {
                "iteration": self.iteration,
                "val_dice": float(dice),
                "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            }


@dataclass
class _Run:
    """One run: its fixed parts (network, optimiser, schedule, data) and its progress."""

    cfg: TrainConfig
    items: Sequence[TrainItem]
    net: Any
    opt: Any
    device: str
    threads: int
    fmt: Any
    data: dict  # `_data_key` of the run's items (its image channels too)
    in_channels: int
    per_epoch: int
    total: int
    stop_at: int
    out: Path | None
    state: TrainState
    progress: bool = True
    val_cases: list = field(default_factory=list)
    last_val: float = float("nan")
    stopped_early: bool = False

    @property
    def image_channels(self) -> int:
        """The items' image channel count (recorded in `data`)."""
        return int(self.data["image_channels"])

    def checkpoint(self) -> None:
        """Write ``OUT/checkpoint.pt`` (nothing without a run folder)."""
        if self.out is None:
            return
        _atomic_save(
            {
                "net": self.net.state_dict(),
                "opt": self.opt.state_dict(),
                "state": self.state.to_dict(),
                "config": _cfg_key(self.cfg),
                "data": self.data,
            },
            self.out / "checkpoint.pt",
        )

    def validate(self) -> float:
        """The validation Dice of the current weights (remembered if the best)."""
        dice = _validate(self.net, self.val_cases, self.device, max(self.cfg.batch_size, 4))
        self.state.remember_best(self.net, dice, self.cfg.keep_best)
        return dice


def train(
    items: Sequence[TrainItem],
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    val_items: Sequence[TrainItem] = (),
    name: str = "model",
    resume: str | os.PathLike | None = None,
    card_extra: dict | None = None,
    progress: bool = True,
    max_iterations: int | None = None,
) -> TrainResult:
    """Train a stage-1 U-Net and (if `out_dir`) write ``NAME.pt`` + ``NAME.json``.

    Parameters
    ----------
    items : sequence of TrainItem
        Training pairs; every mask must contain the object. ``cfg.synthetic``
        synthetic items (`synthetic_items`, seeded by ``cfg.seed``) are appended.
    cfg : TrainConfig
    out_dir : path, optional
        Run folder for ``checkpoint.pt``, ``NAME.pt``, ``NAME.json``. None:
        nothing is written (tests).
    val_items : sequence of TrainItem
        Validation pairs (fixed points, seeded); Dice in image space at 0.5.
    name : str
        Model name (file stem and card ``name``).
    resume : path, optional
        A ``checkpoint.pt`` written by an earlier run with the same config;
        training continues from it and ends with the same weights as an
        uninterrupted run.
    card_extra : dict, optional
        Extra card fields (data description, split, command, licence).
    progress : bool
        Show a tqdm bar with the loss and the last validation Dice.
    max_iterations : int, optional
        Stop after this iteration (the schedule still spans all epochs), with
        a validation there. Unlike ``cfg.max_minutes`` the same on every
        machine: a run cut short by time is repeated, sample for sample, by
        setting this to its card's ``iterations``.

    Returns
    -------
    TrainResult
    """
    items, image_channels = _checked_items(items, val_items, cfg)
    data = _data_key(items, val_items, image_channels)
    run = _start(items, cfg, out_dir, data, resume, max_iterations, progress)
    if val_items:
        run.val_cases = _make_val_cases(
            val_items, cfg, cfg.seed if cfg.val_seed is None else cfg.val_seed
        )
    _validate_start(run)
    _loop(run, name)
    return _finish(run, name, val_items, card_extra)


def _checked_items(
    items: Sequence[TrainItem], val_items: Sequence[TrainItem], cfg: TrainConfig
) -> tuple[Sequence[TrainItem], int]:
    """The training items (synthetic ones appended) and their image channel count.

    Raises `InvalidInputError` for no items, masks of the wrong dimension or
    empty, and items (training or validation) of different channel counts.
    """
    if not items:
        raise InvalidInputError("no training items given")
    if cfg.synthetic:
        # part of the config, so a checkpoint cannot be resumed with another mix
        items = list(items) + synthetic_items(
            cfg.synthetic,
            cfg.spatial_dims,
            seed=cfg.seed,
            inclusions=cfg.synthetic_inclusions,
            large=cfg.synthetic_large,
            workers=cfg.workers,
        )
    for it in list(items) + list(val_items):
        m = np.asarray(it.mask)
        if m.ndim != cfg.spatial_dims:
            raise InvalidInputError(
                f"item {it.name!r}: mask has {m.ndim} dimensions, the config is {cfg.spatial_dims}D"
            )
        if not np.any(m):
            raise InvalidInputError(f"item {it.name!r}: mask is empty")

    def _channels(it):
        im = np.asarray(it.image)
        return 1 if im.ndim == cfg.spatial_dims else int(im.shape[0])

    counts: dict[int, str] = {}  # image channels -> an item's name
    for it in list(items) + list(val_items):
        counts.setdefault(_channels(it), it.name)
    if len(counts) > 1:
        raise InvalidInputError(
            "training items mix image channel counts: "
            + ", ".join(f"{c} (e.g. {n!r})" for c, n in sorted(counts.items()))
            + "; train one model per channel count"
        )
    return items, _channels(items[0])


def _start(
    items: Sequence[TrainItem],
    cfg: TrainConfig,
    out_dir,
    data: dict,
    resume,
    max_iterations: int | None,
    progress: bool,
) -> _Run:
    """Network, optimiser and progress of a new run, or of the one `resume` continues."""
    import torch

    from ..nets import UNet

    image_channels = int(data["image_channels"])
    in_channels = image_channels + (0 if cfg.cue == "none" else 1)
    threads = cfg.torch_threads()
    torch.set_num_threads(threads)
    device = cfg.torch_device()
    torch.manual_seed(cfg.seed)
    net = UNet(cfg.spatial_dims, in_channels, cfg.out_channels, base=cfg.base, depth=cfg.depth)
    # A resumed run takes its weights (and what it started from) from the checkpoint: the
    # file named by cfg.init may have been replaced since.
    init_info = _init_from(net, cfg, in_channels) if cfg.init and resume is None else None
    net.to(device).train()
    # channels-last is ~25 % faster for 3D convolutions on CPU (oneDNN); same numbers.
    fmt = torch.channels_last_3d if cfg.spatial_dims == 3 else torch.contiguous_format
    net.to(memory_format=fmt)  # type: ignore[call-overload]  # documented; not in torch's stub
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    per_epoch = math.ceil(len(items) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    state = TrainState(init=init_info) if resume is None else _resume(resume, cfg, net, opt, data)
    stop_at = total if max_iterations is None else min(total, int(max_iterations))
    return _Run(
        cfg=cfg,
        items=items,
        net=net,
        opt=opt,
        device=device,
        threads=threads,
        fmt=fmt,
        data=data,
        in_channels=in_channels,
        per_epoch=per_epoch,
        total=total,
        stop_at=stop_at,
        out=out,
        state=state,
        progress=progress,
    )


#: Version of the data record a checkpoint holds (`_data_key`); a checkpoint with another
#: is resumed unchecked, with a note.
DATA_RECORD = 2


def _fingerprint(items: Sequence[TrainItem]) -> str:
    """A digest of items' names, spacing, object size and the image values inside the object
    (their sum and every 97th of them in array order, all channels): other files, pixels,
    spacing, targets or cases change it; cropping around the object, as ``--cache`` stores
    items, does not."""
    h = hashlib.sha256()
    for it in items:
        m = np.asarray(it.mask, dtype=bool)
        im = np.asarray(it.image, dtype=np.float32)
        inside = im[m] if im.ndim == m.ndim else im[:, m]
        spacing = None if it.spacing is None else tuple(round(float(s), 6) for s in it.spacing)
        h.update(
            f"{it.name}|{spacing}|{int(m.sum())}|{float(inside.sum(dtype=np.float64))!r}|".encode()
        )
        h.update(np.ascontiguousarray(inside[..., ::97]).tobytes())
    return h.hexdigest()[:16]


def _data_key(
    items: Sequence[TrainItem], val_items: Sequence[TrainItem], image_channels: int
) -> dict:
    """What a checkpoint records about its data: the training and validation item counts,
    a `_fingerprint` of each, and the image channels."""
    return {
        "record": DATA_RECORD,
        "items": len(items),
        "items_sha256": _fingerprint(items),
        "validation_items": len(val_items),
        "validation_sha256": _fingerprint(val_items),
        "image_channels": int(image_channels),
    }


def _differences(old: dict, new: dict) -> str:
    """The keys whose values differ, as ``key: OLD (checkpoint) vs NEW (now)``."""
    keys = sorted(set(old) | set(new))
    return "; ".join(
        f"{k}: {old.get(k)!r} (checkpoint) vs {new.get(k)!r} (now)"
        for k in keys
        if old.get(k) != new.get(k)
    )


def check_config(ck: dict, cfg: TrainConfig, path) -> None:
    """Raise `MidsegError` naming the differing settings when checkpoint dict `ck` (read from
    `path`) was written with another configuration than `cfg`."""
    old = _with_defaults(ck.get("config"))
    if not isinstance(old, dict) or old != _cfg_key(cfg):
        shown = _differences(old, _cfg_key(cfg)) if isinstance(old, dict) else "no configuration"
        raise MidsegError(
            f"checkpoint '{path}' was written with a different configuration ({shown}); "
            "resume with the same options or start a new run folder"
        )


def _resume(path, cfg: TrainConfig, net, opt, data: dict) -> TrainState:
    """Load the checkpoint `path` into `net` and `opt`; its progress.

    Raises `MidsegError` naming what differs when it was written with another
    configuration, on other training data (`_data_key`), or, for checkpoints older than
    the data record, for a network of other shapes (another image channel count).
    """
    ck = _load_checkpoint(path)
    check_config(ck, cfg, path)
    recorded = ck.get("data") if isinstance(ck.get("data"), dict) else None
    version = recorded.get("record") if recorded is not None else None
    if recorded is not None and version != DATA_RECORD:
        recorded = None  # another record's format: not comparable
    if recorded is not None and recorded != data:
        raise MidsegError(
            f"checkpoint '{path}' was written on other training data "
            f"({_differences(recorded, data)}): the pool, targets, cases, files, spacing, "
            "validation cases or channels differ; resume with the same data or start a new "
            "run folder"
        )
    if recorded is None:
        why = (
            "predates the data record"
            if not isinstance(version, int) or version < DATA_RECORD
            else f"holds a newer data record (version {version})"
        )
        print(f"note: checkpoint '{path}' {why}: its data is not checked")
    own = net.state_dict()
    shapes = [
        f"{k} {list(v.shape)} (checkpoint) vs {list(own[k].shape)} (now)"
        for k, v in ck["net"].items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        raise MidsegError(
            f"checkpoint '{path}' holds a network of other shapes ({shapes[0]}): it was "
            "written for another number of image channels; start a new run folder"
        )
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    return TrainState.from_dict(ck["state"])


def _validate_start(run: _Run) -> None:
    """Validate the starting weights of a fine-tuning run (iteration 0)."""
    state = run.state
    if state.init is not None and run.val_cases and state.iteration == 0:
        # The starting weights are a candidate too: fine-tuning that never beats them on
        # validation leaves them as they were (with --keep-best).
        d0 = run.validate()
        state.init["val_dice"] = round(d0, 5)
        state.history.append(
            {"iteration": 0, "epoch": 0, "val_dice": round(d0, 5), "elapsed_s": 0.0}
        )
        print(json.dumps(state.history[-1]), flush=True)


def _loop(run: _Run, name: str) -> None:
    """Iterate from ``run.state.iteration`` to ``run.stop_at`` (or until out of time)."""
    from tqdm import tqdm

    state, cfg = run.state, run.cfg
    t_start = time.perf_counter()
    elapsed0 = state.elapsed
    last_ck = time.perf_counter()
    bar = tqdm(
        total=run.total,
        initial=state.iteration,
        disable=not run.progress,
        desc=f"train {name}",
        dynamic_ncols=True,
        mininterval=2.0,
    )
    loader = _worker_batches(run)
    run.last_val = state.history[-1]["val_dice"] if state.history else float("nan")
    while state.iteration < run.stop_at:
        it = state.iteration
        epoch = it // run.per_epoch
        xb, yb = _next_batch(run, loader, it)
        lr, lv = _step(run, it, xb, yb)
        state.iteration = it + 1
        state.elapsed = elapsed0 + time.perf_counter() - t_start
        _record(run, bar, epoch, lr, lv)
        if time.perf_counter() - last_ck > 60 * cfg.checkpoint_minutes:
            run.checkpoint()
            last_ck = time.perf_counter()
        if _out_of_time(run, epoch, lr):
            break
    bar.close()


def _worker_batches(run: _Run):
    """An iterator over the run's remaining mini-batches made in worker processes, or None."""
    import torch

    if run.cfg.workers > 0 and run.state.iteration < run.stop_at:
        # The same samples as without workers (each is seeded by its place in the run),
        # made ahead in worker processes.
        # a map-style dataset (__len__, __getitem__) that is not a Dataset subclass
        stream = cast(
            "torch.utils.data.Dataset",
            _SampleStream(run.items, run.cfg, run.per_epoch, run.state.iteration, run.stop_at),
        )
        return iter(
            torch.utils.data.DataLoader(
                stream,
                batch_size=None,
                shuffle=False,
                num_workers=run.cfg.workers,
                prefetch_factor=4,
                persistent_workers=False,
            )
        )
    return None


def _next_batch(run: _Run, loader, it: int):
    """The inputs and targets of iteration `it`, made here or by the workers."""
    if loader is None:
        return _SampleStream.batch(run.items, run.cfg, run.per_epoch, it)
    got, xb, yb = next(loader)
    if int(got) != it:
        raise MidsegError(f"sample workers returned iteration {int(got)}, expected {it}")
    return xb, yb


def _step(run: _Run, it: int, xb, yb) -> tuple[float, float]:
    """One optimiser step on a mini-batch; returns the learning rate and the loss."""
    import torch

    lr = lr_at(it, run.total, run.cfg.lr, run.cfg.schedule)
    for grp in run.opt.param_groups:
        grp["lr"] = lr
    xb = torch.as_tensor(xb).to(run.device).contiguous(memory_format=run.fmt)
    yb = torch.as_tensor(yb).to(run.device)
    run.opt.zero_grad(set_to_none=True)
    loss = _loss(run.net, run.net(xb), yb, run.cfg.loss)
    loss.backward()
    run.opt.step()
    lv = float(loss.detach())
    st = run.state
    st.ema = lv if st.ema is None else 0.95 * st.ema + 0.05 * lv
    return lr, lv


def _record(run: _Run, bar, epoch: int, lr: float, lv: float) -> None:
    """After an iteration: validation and history when due, the progress bar."""
    state, cfg = run.state, run.cfg
    done = state.iteration == run.stop_at
    due = state.iteration % cfg.val_every == 0 or done
    if run.val_cases and due:
        run.last_val = run.validate()
    assert run.state.ema is not None  # _step set it
    if due:
        state.history.append(
            {
                "iteration": state.iteration,
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": round(lv, 5),
                "train_loss_ema": round(run.state.ema, 5),
                "val_dice": round(run.last_val, 5),
                "elapsed_s": round(state.elapsed, 1),
            }
        )
        if run.progress:
            bar.write(json.dumps(state.history[-1]))
        else:
            print(json.dumps(state.history[-1]), flush=True)
    bar.update(1)
    bar.set_postfix(
        loss=f"{run.state.ema:.4f}", val_dice=f"{run.last_val:.4f}", lr=f"{lr:.1e}", refresh=False
    )


def _out_of_time(run: _Run, epoch: int, lr: float) -> bool:
    """Past ``cfg.max_minutes`` before the end: validate, record, and say stop."""
    state, cfg = run.state, run.cfg
    done = state.iteration == run.stop_at
    if cfg.max_minutes is None or not state.elapsed > 60 * cfg.max_minutes or done:
        return False
    run.stopped_early = True
    if run.val_cases:
        run.last_val = run.validate()
    assert run.state.ema is not None  # _step set it
    state.history.append(
        {
            "iteration": state.iteration,
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss_ema": round(run.state.ema, 5),
            "val_dice": round(run.last_val, 5),
            "elapsed_s": round(state.elapsed, 1),
        }
    )
    return True


def _finish(
    run: _Run, name: str, val_items: Sequence[TrainItem], card_extra: dict | None
) -> TrainResult:
    """Last checkpoint, the shipped weights (last or best), the card, the files."""
    state, cfg, net = run.state, run.cfg, run.net
    run.stopped_early = run.stopped_early or state.iteration < run.total
    run.checkpoint()
    if cfg.keep_best and state.best:
        # Ship the weights with the best validation Dice (model choice on validation only).
        net.load_state_dict(state.best["net"])
        run.last_val = state.best["val_dice"]
    net.eval()

    card = _make_card(
        name,
        cfg,
        net,
        run.image_channels,
        run.in_channels,
        state,
        run.total,
        run.per_epoch,
        len(run.items),
        val_items,
        run.last_val,
        run.device,
        run.threads,
        run.stopped_early,
        card_extra,
        state.init,
    )
    weights_path = card_path = None
    if run.out is not None:
        weights_path, card_path = _write_model(run.out, name, net, card)
    return TrainResult(
        net=net, card=card, weights_path=weights_path, card_path=card_path, history=state.history
    )


def _write_model(out: Path, name: str, net, card: dict) -> tuple[Path, Path]:
    """Write ``NAME.pt`` (float32 state dict) and ``NAME.json`` (the card, with the
    weights' size and sha256) into `out`."""
    weights_path = out / f"{name}.pt"
    card_path = out / f"{name}.json"
    sd = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    _atomic_save(sd, weights_path)
    card["weights"] = {
        "file": weights_path.name,
        "dtype": "float32",
        "bytes": weights_path.stat().st_size,
        "sha256": file_sha256(weights_path),
    }
    write_json_atomic(card_path, card, indent=2)  # cards keep their indent of 2
    return weights_path, card_path
