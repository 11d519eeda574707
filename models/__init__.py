"""Shipped stage-1 weights and their model cards: find, load and describe them.

Each model is a ``NAME.pt`` state dict with a ``NAME.json`` card beside it
(data, split, command, grid, cue, validation Dice, licence), or an *ensemble*: a
``NAME.json`` card alone that names member models of this folder (their files and sha256)
whose foreground probabilities stage 1 averages (`EnsembleModel`). Importing this
package must not import torch; loading does, once per model and device, except where
ONNX Runtime runs a network whose export is cached: then torch is imported only when
something asks for the PyTorch network (`LoadedModel.net`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from midseg.errors import ModelError

__all__ = [
    "LoadedModel",
    "EnsembleModel",
    "load_model",
    "load_weights_only",
    "list_models",
    "describe",
    "read_card",
    "model_path",
    "model_sha256",
    "clear_cache",
    "MODELS_DIR",
    "CARD_FORMAT",
    "ENSEMBLE_FIELD",
]

#: Folder holding the shipped ``*.pt`` + ``*.json`` pairs (this package).
MODELS_DIR = Path(__file__).resolve().parent

#: ``format`` field every model card carries.
CARD_FORMAT = "midseg-model-card"

# Fields load_model needs to rebuild the network and its input pipeline.
_REQUIRED = ("architecture", "grid_shape", "cue", "image_channels")
#: Card field of an ensemble: ``{"members": [{"file", "sha256"}, ...], "combine": "mean"}``.
ENSEMBLE_FIELD = "ensemble"
# Fields of an ensemble's card.
_REQUIRED_ENSEMBLE = (ENSEMBLE_FIELD, "spatial_dims", "grid_shape", "cue", "image_channels")

_CACHE: dict[tuple[str, str, str], "LoadedModel | EnsembleModel"] = {}
#: Runtimes of the stage-1 forward pass. "auto" (default, or environment variable
#: MIDSEG_RUNTIME): ONNX Runtime on CPU when the optional packages onnxruntime and onnx are
#: installed (``pip install midseg[fast]``), else PyTorch. The two agree to about 1e-4 in
#: probability, so a voxel within that of 0.5 may change label between them.
RUNTIMES = ("auto", "torch", "onnxruntime")
#: ONNX opset of the exported networks.
ONNX_OPSET = 17
_LOCK = threading.Lock()
_NET_LOCK = threading.Lock()
_SINGLE_THREAD_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class _ModelInfo:
    """What the input pipeline reads of a stage-1 model (`LoadedModel`, `EnsembleModel`)."""

    name: str
    path: Path
    card: dict = field(repr=False)
    spatial_dims: int
    grid_shape: tuple[int, ...]
    cue: str
    cue_params: dict
    image_channels: int
    in_channels: int
    out_channels: int
    margin: Any
    device: str
    runtime: str = "torch"


@dataclass(frozen=True, eq=False)
class LoadedModel(_ModelInfo):
    """A stage-1 network ready for inference, with the card it came with.

    Attributes
    ----------
    name : str
        The card's name (``"2d"``, ``"3d"`` or the file stem).
    path : pathlib.Path
        The ``.pt`` weights file.
    net : midseg.nets.UNet
        In eval mode, on `device`. Built (and torch imported) on first access where ONNX
        Runtime loaded the model from its cached export without it.
    card : dict
        The parsed model card (JSON).
    spatial_dims : int
        2 or 3.
    grid_shape : tuple of int
        Network input size in array order, e.g. ``(64, 64)`` or ``(64, 96, 96)``.
    cue : str
        Cue map kind (``"egd"``, ..., or ``"none"`` for image only).
    cue_params : dict
        Extra keyword arguments for `midseg.cues.cue_map`.
    image_channels : int
        Image channels the network expects (in_channels minus cue channels).
    in_channels, out_channels : int
        Network input / output channels.
    margin : int or tuple of int or None
        Margin of the relaxed bounding box used in training (None: the
        `midseg.crop.DEFAULT_MARGIN` of the installed version).
    device : str
        Torch device the network lives on.
    runtime : {"torch", "onnxruntime"}
        What runs the forward pass of `forward` (`RUNTIMES`, ``MIDSEG_RUNTIME``).
    """

    _net: Any = field(default=None, repr=False)  # the network, or None until `net` builds it
    ort: Any = field(default=None, repr=False)

    @property
    def net(self):
        """The PyTorch network (`midseg.nets.UNet`), read from `path` on first use."""
        if self._net is None:
            with _NET_LOCK:
                if self._net is None:
                    net, _ = _read_network(self.path, self.device)
                    object.__setattr__(self, "_net", net)
        return self._net

    def forward(self, x):
        """Foreground probability on the grid for one network input.

        Parameters
        ----------
        x : (in_channels, *grid_shape) ndarray of float32

        Returns
        -------
        (*grid_shape) ndarray of float32, in [0, 1]
        """
        import numpy as np

        if self.ort is None:
            return net_forward(self.net, x)
        logits = self.ort.run(None, {"x": np.ascontiguousarray(x[None], dtype=np.float32)})[0]
        return foreground_probability(logits[0], self.out_channels)

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, spatial_dims={self.spatial_dims}, "
            f"grid_shape={self.grid_shape}, cue={self.cue!r}, "
            f"in_channels={self.in_channels}, device={self.device!r}, path='{self.path}')"
        )


@dataclass(frozen=True, eq=False)
class EnsembleModel(_ModelInfo):
    """Stage-1 networks for one task whose foreground probabilities are averaged.

    Loaded by `load_model` from an ensemble card (a ``NAME.json`` whose ``"ensemble"``
    entry lists member weight files of the same folder with their sha256).
    `midseg.predict.predict_probability` runs every member on the same relaxed box, each
    with its own cue map, and returns the mean of their probabilities (an unweighted
    average of independently trained networks, Lakshminarayanan et al., NeurIPS 2017).
    The members share the grid, the box margin, the image channels and the dimensions.

    Attributes
    ----------
    name : str
        The card's name.
    path : pathlib.Path
        The ensemble's card (its sha256 covers the members' sha256: what a clicks file
        records of the model).
    card : dict
        The parsed card.
    members : tuple of LoadedModel
        The member networks, in the card's order.
    spatial_dims, grid_shape, image_channels, margin, device, runtime
        The members' (equal for all of them; `runtime` of the first).
    cue : str
        ``"ensemble"``; each member has its own (`members`).
    cue_params : dict
        Empty.
    in_channels, out_channels : int
        The first member's.
    """

    members: tuple = ()

    @property
    def net(self):
        """An ensemble has no single network: raises `ModelError` (see `members`)."""
        names = ", ".join(repr(m.name) for m in self.members)
        raise ModelError(f"model {self.name!r} is an ensemble of {names}: it has no single network")

    def __repr__(self) -> str:
        return (
            f"EnsembleModel(name={self.name!r}, members={[m.name for m in self.members]}, "
            f"spatial_dims={self.spatial_dims}, device={self.device!r}, path='{self.path}')"
        )


def foreground_probability(logits, out_channels: int):
    """Foreground probability from one input's logits, in NumPy (no torch needed).

    `logits`: (out_channels, *grid) float32. Two channels: softmax, channel 1, computed
    as ``exp(l1 - m) / (exp(l0 - m) + exp(l1 - m))`` with ``m`` the larger logit (as
    `midseg.nets.UNet.foreground_probability`); one channel: the sigmoid. Agrees with the
    PyTorch functions to about 1e-7 (their exp is another implementation).
    """
    import numpy as np

    logits = np.asarray(logits, dtype=np.float32)
    if out_channels == 2:
        e = np.exp(logits - logits.max(axis=0))
        return (e[1] / (e[0] + e[1])).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-logits[0]))).astype(np.float32)


def net_forward(net, x):
    """The PyTorch forward pass of a stage-1 network on one input.

    `x`: (in_channels, *grid_shape) float32 array; returns the foreground probability on
    the grid, float32. 3D inputs go channels-last (as the loader puts 3D networks); a 2D
    network on the CPU runs with one torch thread (the process's setting is restored).
    """
    import numpy as np
    import torch

    dev = next(net.parameters()).device
    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(dev)
        if xt.ndim == 5:
            xt = xt.contiguous(memory_format=torch.channels_last_3d)
            logits = net(xt)
        elif dev.type == "cpu" and torch.get_num_threads() > 1:
            # a 2D network on the CPU runs on one thread: 10 ms instead of 7 on an idle
            # machine, but on a busy one two threads stalled for up to 1 s at a time
            # (docs/decisions.md); the caller's setting is restored after
            with _SINGLE_THREAD_LOCK:
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    logits = net(xt)
                finally:
                    torch.set_num_threads(threads)
        else:
            logits = net(xt)
        return net.foreground_probability(logits)[0].float().cpu().numpy()


def list_models() -> list[str]:
    """Names of the shipped models (a ``NAME.pt`` with a ``NAME.json`` beside it, or an
    ensemble card ``NAME.json``), sorted."""
    names = {p.stem for p in MODELS_DIR.glob("*.pt") if p.with_suffix(".json").is_file()}
    names |= {p.stem for p in MODELS_DIR.glob("*.json") if _is_ensemble_card(p)}
    return sorted(names)


def _is_ensemble_card(path: Path, card: Any = None) -> bool:
    """Whether `path` (or its parsed JSON `card`) is a model card with an ``"ensemble"``
    entry (False if unreadable)."""
    if card is None:
        try:
            card = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
    return isinstance(card, dict) and card.get("format") == CARD_FORMAT and (ENSEMBLE_FIELD in card)


def model_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a shipped model name or a path to its ``.pt`` file (an ensemble: its card).

    Raises
    ------
    ModelError
        No shipped model of that name, or the path does not exist / has no card.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ModelError(
            f"a model is named by a string or a path, got {type(name_or_path).__name__}"
        )
    text = os.fspath(name_or_path)
    looks_like_path = (
        text.endswith((".pt", ".json"))
        or os.sep in text
        or "/" in text
        or isinstance(name_or_path, os.PathLike)
    )
    if not looks_like_path:
        pt = MODELS_DIR / f"{text}.pt"
        if pt.is_file() and pt.with_suffix(".json").is_file():
            return pt
        if _is_ensemble_card(pt.with_suffix(".json")):
            return pt.with_suffix(".json")
        avail = ", ".join(repr(n) for n in list_models()) or "none"
        raise ModelError(f"no shipped model named {text!r}; available: {avail}")
    pt = Path(text).expanduser()
    if pt.suffix == ".json":
        if not pt.is_file():
            raise ModelError(f"model card '{pt}' does not exist")
        try:
            parsed = json.loads(pt.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model card '{pt}': {exc}") from exc
        if not _is_ensemble_card(pt, parsed):
            raise ModelError(
                f"'{pt}' is not an ensemble card: a single model is named by its .pt file"
            )
        return pt
    if pt.suffix != ".pt":
        raise ModelError(
            f"model weights must be a .pt file (an ensemble: its .json card), got '{pt}'"
        )
    if not pt.is_file():
        raise ModelError(f"model weights file '{pt}' does not exist")
    if not pt.with_suffix(".json").is_file():
        raise ModelError(
            f"model card '{pt.with_suffix('.json')}' is missing: a .pt file needs its "
            f"model card (same stem, .json) beside it"
        )
    return pt


def read_card(name_or_path: str | os.PathLike) -> dict:
    """The model card (parsed JSON) of a shipped model name or a ``.pt`` path."""
    pt = model_path(name_or_path)
    card_file = pt.with_suffix(".json")
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read model card '{card_file}': {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"'{card_file}' is not a midseg model card (format != {CARD_FORMAT!r})")
    missing = [
        k for k in (_REQUIRED_ENSEMBLE if ENSEMBLE_FIELD in card else _REQUIRED) if k not in card
    ]
    if missing:
        raise ModelError(f"model card '{card_file}' lacks the field(s) {', '.join(missing)}")
    if ENSEMBLE_FIELD in card:
        _check_ensemble_card(card, card_file)
    return card


def _check_ensemble_card(card: dict, card_file: Path) -> None:
    """Raise ModelError unless an ensemble card's fields have the types its readers use."""
    spec = card[ENSEMBLE_FIELD]
    members = spec.get("members") if isinstance(spec, dict) else None
    if (
        not isinstance(members, list)
        or not members
        or not all(isinstance(m, dict) for m in members)
    ):
        raise ModelError(
            f"ensemble card '{card_file}': 'ensemble' must be an object whose 'members' is a "
            "non-empty list of objects"
        )
    for key in ("spatial_dims", "image_channels"):
        if isinstance(card[key], bool) or not isinstance(card[key], int):
            raise ModelError(f"ensemble card '{card_file}': {key!r} must be an integer")


def model_sha256(name_or_path: str | os.PathLike) -> str:
    """The sha256 that identifies a model's results: of its weights file, or for an ensemble
    card of the text ``"mean:"`` followed by its members' weight sha256 (as the card records
    them, comma-separated, in order), so that editing an ensemble card's description does
    not change it while changing a member does. What clicks files record (``model.sha256``).
    """
    import hashlib

    from midseg.io import file_sha256

    pt = model_path(name_or_path)
    if pt.suffix != ".json":
        return file_sha256(pt)
    members = read_card(pt)[ENSEMBLE_FIELD]["members"]  # a checked list of objects
    text = "mean:" + ",".join(str(m.get("sha256")) for m in members)
    return hashlib.sha256(text.encode()).hexdigest()


#: Files of a GPU driver (NVIDIA, ROCm, WSL): where none exists, torch cannot see a GPU.
_GPU_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def _no_gpu() -> bool:
    """True where no GPU driver is installed (Linux): the default device is then the CPU,
    known without importing torch (1-1.5 s) to ask it."""
    return sys.platform.startswith("linux") and not any(os.path.exists(f) for f in _GPU_FILES)


def _import_runtime() -> None:
    """Import what runs the networks by default here (ONNX Runtime or torch), and nothing
    else: for a process that forks workers (`midseg._preload`). Torch is imported, not
    used (no thread pool starts), where a GPU may run the networks."""
    runtime = "torch"
    if _no_gpu():
        try:
            runtime = _runtime("cpu")
        except ModelError:  # a bad MIDSEG_RUNTIME: load_model will say so
            pass
    if runtime == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import torch  # noqa: F401


def _resolve_device(device) -> str:
    if device is None and "torch" not in sys.modules and _no_gpu():
        return "cpu"
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    dev = str(device)
    try:
        torch.device(dev)
    except (RuntimeError, TypeError, ValueError):
        raise ModelError(
            f"device {dev!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
        ) from None
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {dev!r} requested but CUDA is not available")
    return dev


def load_model(
    name_or_path: str | os.PathLike, *, device: str | None = None
) -> LoadedModel | EnsembleModel:
    """Load a shipped model (``"2d"``, ``"3d"``), a ``.pt`` file with its card, or an
    ensemble card (``.json``).

    Loaded models are cached per process (keyed by file and device), so a
    session or a GUI loads each model once, never per click.

    Parameters
    ----------
    name_or_path : str or path-like
        A name from `list_models()`, or a path to a ``.pt`` state dict whose
        model card (same stem, ``.json``) lies beside it.
    device : str, optional
        Torch device; default CUDA when available, else CPU. Weights are
        always read with ``map_location="cpu"`` first.

    Returns
    -------
    LoadedModel or EnsembleModel
        The network in eval mode plus what the input pipeline needs; for an ensemble
        card, its members loaded so.

    Raises
    ------
    ModelError
        Unknown name, missing file or card, weights that do not match the
        card's architecture, or an ensemble member missing, of another sha256 than its
        card records, or of another grid, margin, dimensionality or image channels than
        the others.
    """
    pt = model_path(name_or_path)
    dev = _resolve_device(device)
    runtime = _runtime(dev)
    key = (str(pt.resolve()), dev, runtime)
    if pt.suffix == ".json":
        with _LOCK:
            found = _CACHE.get(key)
        if found is None:
            ensemble = _load_ensemble(pt, device)  # loads its members: not under the lock
            with _LOCK:
                found = _CACHE.setdefault(key, ensemble)
        return found
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        loaded = None
        if runtime == "onnxruntime":
            loaded = _load_cached_export(pt, dev)
        if loaded is None:
            loaded = _load_uncached(pt, dev)
            if runtime == "onnxruntime":
                ort = _ort_session(loaded)
                if ort is not None:
                    loaded = replace(loaded, runtime="onnxruntime", ort=ort)
        _CACHE[key] = loaded
        return loaded


def _load_ensemble(card_path: Path, device: str | None) -> EnsembleModel:
    """The `EnsembleModel` of an ensemble card: its members loaded with `load_model`."""
    from midseg.io import file_sha256

    card = read_card(card_path)  # checks the members' list and the integer fields
    spec = card[ENSEMBLE_FIELD]
    entries = spec["members"]
    if spec.get("combine", "mean") != "mean":
        raise ModelError(
            f"ensemble card '{card_path}': combine {spec.get('combine')!r} is not 'mean'"
        )
    members = []
    for k, entry in enumerate(entries):
        if not isinstance(entry.get("file"), str):
            raise ModelError(f"ensemble card '{card_path}': members[{k}] lacks its 'file'")
        name = entry["file"]
        if Path(name).name != name or not name.endswith(".pt"):
            raise ModelError(
                f"ensemble card '{card_path}': members[{k}] file {name!r} must be the name of "
                "a .pt file in the card's folder"
            )
        pt = card_path.parent / name
        if not pt.is_file():
            raise ModelError(f"ensemble card '{card_path}': member weights '{pt}' are missing")
        if not isinstance(entry.get("sha256"), str):
            raise ModelError(f"ensemble card '{card_path}': members[{k}] records no sha256")
        if entry.get("sha256") != file_sha256(pt):
            raise ModelError(
                f"ensemble card '{card_path}': member '{pt.name}' is not the file the card "
                "records (sha256 differs): the ensemble's results would not be its card's"
            )
        members.append(load_model(pt, device=device))
    first = members[0]
    for m in members[1:]:
        for attr in ("spatial_dims", "grid_shape", "image_channels", "margin"):
            if getattr(m, attr) != getattr(first, attr):
                raise ModelError(
                    f"ensemble card '{card_path}': member {m.name!r} has {attr} "
                    f"{getattr(m, attr)!r}, member {first.name!r} {getattr(first, attr)!r}"
                )
    if card["spatial_dims"] != first.spatial_dims or card["image_channels"] != first.image_channels:
        raise ModelError(
            f"ensemble card '{card_path}': spatial_dims / image_channels differ from its members'"
        )
    return EnsembleModel(
        name=str(card.get("name", card_path.stem)),
        path=card_path,
        card=card,
        members=tuple(members),
        spatial_dims=first.spatial_dims,
        grid_shape=first.grid_shape,
        cue=str(card["cue"]),
        cue_params={},
        image_channels=first.image_channels,
        in_channels=first.in_channels,
        out_channels=first.out_channels,
        margin=first.margin,
        device=first.device,
        runtime=first.runtime,
    )


def _runtime(dev: str) -> str:
    """The runtime `load_model` uses on `dev` (`RUNTIMES`, environment MIDSEG_RUNTIME)."""
    import importlib.util

    want = os.environ.get("MIDSEG_RUNTIME", "auto").strip().lower() or "auto"
    if want not in RUNTIMES:
        raise ModelError(f"MIDSEG_RUNTIME must be one of {', '.join(RUNTIMES)}, got {want!r}")
    if want == "torch" or dev != "cpu":
        return "torch"
    have = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    if want == "onnxruntime" and not have:
        raise ModelError(
            "MIDSEG_RUNTIME=onnxruntime needs the packages onnxruntime and onnx "
            "(pip install midseg[fast])"
        )
    return "onnxruntime" if have else "torch"


def onnx_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/midseg/onnx`` (``~/.cache/midseg/onnx``): exported networks."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "midseg" / "onnx"


def _export_path(pt: Path, card: dict) -> Path | None:
    """Where `_ort_session` keeps the export of the weights `pt` (None: torch not installed).

    Named by the weights' sha256, the card's architecture and grid (an export exists only
    for a pair that loaded together), and the torch version, read from the installed
    package's metadata so that torch need not be imported to find it.
    """
    import hashlib
    from importlib import metadata

    from midseg.io import file_sha256

    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    digest = file_sha256(pt)[:20]
    shape = {"architecture": card.get("architecture"), "grid_shape": card.get("grid_shape")}
    net = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]
    return onnx_cache_dir() / f"{digest}-{net}-torch{version}-opset{ONNX_OPSET}.onnx"


def _load_cached_export(pt: Path, dev: str) -> LoadedModel | None:
    """The model run by ONNX Runtime from its cached export, without importing torch.

    None where there is no cached export (the weights were never exported: `load_model`
    then reads them with torch, which also checks them) or ONNX Runtime refuses it. The
    PyTorch network is read when something asks for `LoadedModel.net`.
    """
    card = read_card(pt)
    cached = _export_path(pt, card)
    if cached is None or not cached.is_file():
        return None
    try:
        data = cached.read_bytes()
    except OSError:
        return None
    ort = _ort_from_bytes(data)
    if ort is None:
        return None
    return replace(_model_from_card(pt, dev, None, card), runtime="onnxruntime", ort=ort)


def _ort_threads() -> int:
    """Intra-op threads of a new ONNX Runtime session.

    ``torch.get_num_threads()`` where torch is loaded (the caller's setting, e.g. 1 per
    batch worker), else ``OMP_NUM_THREADS`` where set, else 0: ONNX Runtime's default, one
    per physical core, like torch's.
    """
    if "torch" in sys.modules:
        return max(1, sys.modules["torch"].get_num_threads())
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return 0


def _ort_from_bytes(data: bytes):
    """An ONNX Runtime CPU session of a serialised network, or None where it fails."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _ort_threads()
    opts.inter_op_num_threads = 1
    # no busy-waiting between runs: the three members of the 2d ensemble run one after
    # the other, and the spinning threads of one slowed the next (2D stage 1 0.072 s against
    # 0.033 s without spinning; the single network 0.026 s either way)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception:
        return None


def _ort_session(model: "LoadedModel"):
    """An ONNX Runtime session of `model`'s network, or None where export fails.

    The export (``torch.onnx.export``, opset `ONNX_OPSET`, 1-2 s) is kept at
    `_export_path` in `onnx_cache_dir`, and read from there next time (by
    `_load_cached_export`, without torch); where that folder is not writable it stays in
    memory. Threads: `_ort_threads`.
    """
    import io

    import torch

    cached = _export_path(model.path, model.card)
    data = None
    if cached is not None and cached.is_file():
        data = cached.read_bytes()
    else:
        net = model.net
        x = torch.zeros((1, model.in_channels) + tuple(model.grid_shape))
        buf = io.BytesIO()
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net.to(memory_format=torch.contiguous_format)
                # f: the TorchScript exporter (dynamo=False) writes to file objects too
                torch.onnx.export(
                    net,
                    (x,),
                    buf,  # type: ignore[arg-type]  # stub: f is str
                    input_names=["x"],
                    output_names=["logits"],
                    opset_version=ONNX_OPSET,
                    dynamo=False,
                )
        except Exception:  # an exporter problem must never stop a segmentation
            return None
        finally:
            if model.spatial_dims == 3:
                net.to(memory_format=torch.channels_last_3d)
        data = buf.getvalue()
        try:
            from midseg.io import write_bytes_atomic

            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(cached, data)
        except (OSError, ImportError):
            pass
    return _ort_from_bytes(data)


def load_weights_only(path: str | os.PathLike, *, what: str = "weights"):
    """``torch.load(path, weights_only=True)`` with a one-line `ModelError` on failure.

    Only tensors and plain data (numbers, strings, lists, dicts) are loaded: a file that
    holds any other pickled object is refused, since unpickling it could run code.

    Raises
    ------
    ModelError
        The file is missing, truncated, not a PyTorch file, or holds more than weights and
        plain data; the message names the file and `what` it was read as.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{what} file '{p}' does not exist")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for bad files
        text = str(exc)
        if "weights_only" in text or "GLOBAL" in text:
            why = (
                "it holds more than tensors and plain data; refused, since loading it "
                "could run code"
            )
        elif not zipfile.is_zipfile(p) or "zip archive" in text or "central directory" in text:
            why = "it is truncated or not a PyTorch file"
        else:
            why = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise ModelError(f"cannot read {what} '{p}': {why}") from None


def _load_uncached(pt: Path, dev: str) -> LoadedModel:
    net, card = _read_network(pt, dev)
    return _model_from_card(pt, dev, net, card)


def _read_network(pt: Path, dev: str):
    """(network in eval mode on `dev`, card) of the weights `pt`; imports torch."""
    import torch

    from midseg.nets import UNet

    card = read_card(pt)
    if ENSEMBLE_FIELD in card:
        names = [Path(str(m.get("file"))).stem for m in card[ENSEMBLE_FIELD].get("members", [])]
        raise ModelError(
            f"'{pt}' is an ensemble card: it has no single network; name one of its members "
            f"({', '.join(names)})"
        )
    arch = dict(card["architecture"])
    try:
        net = UNet(**arch)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model card of '{pt}' has an invalid architecture {arch}: {exc}") from exc
    state = load_weights_only(pt, what="weights")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except (RuntimeError, AttributeError) as exc:
        raise ModelError(f"weights '{pt}' do not match the card's architecture: {exc}") from exc
    net.to(dev).eval()
    if net.spatial_dims == 3:
        # channels-last 3D convolutions are ~20 % faster on CPU (oneDNN), same results.
        net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # stub lacks it
    for p in net.parameters():
        p.requires_grad_(False)
    return net, card


def _model_from_card(pt: Path, dev: str, net, card: dict | None = None) -> LoadedModel:
    """A `LoadedModel` of the weights `pt` with network `net` (None: built when asked for)."""
    if card is None:
        card = read_card(pt)
    arch = dict(card["architecture"])
    margin = card.get("margin")
    if isinstance(margin, list):
        margin = tuple(int(m) for m in margin)
    return LoadedModel(
        name=str(card.get("name", pt.stem)),
        path=pt,
        _net=net,
        card=card,
        spatial_dims=int(arch["spatial_dims"]),
        grid_shape=tuple(int(s) for s in card["grid_shape"]),
        cue=str(card["cue"]),
        cue_params=dict(card.get("cue_params") or {}),
        image_channels=int(card["image_channels"]),
        in_channels=int(arch["in_channels"]),
        out_channels=int(arch.get("out_channels", 2)),
        margin=margin,
        device=dev,
    )


def describe(name_or_path: str | os.PathLike) -> str:
    """A few lines a user needs about a model: task, data, input, cue, validation, licence."""
    card = read_card(name_or_path)
    if ENSEMBLE_FIELD in card:
        return _describe_ensemble(card, model_path(name_or_path))
    arch = card["architecture"]
    tr = card.get("training", {})
    val = card.get("validation", {})
    lines = [
        f"{card.get('name', name_or_path)}: {card.get('task', 'stage-1 network')}",
        f"  network: {arch.get('spatial_dims')}D U-Net, base width {arch.get('base')}, "
        f"in_channels {arch.get('in_channels')}, {card.get('normalisation', '')}",
        f"  input grid: {tuple(card['grid_shape'])}, cue: {card['cue']}",
        f"  data: {card.get('data', {}).get('description', '?')}",
        f"  training: {tr.get('iterations', '?')} iterations ({tr.get('epochs', '?')} epochs), "
        f"seed {tr.get('seed', '?')}, {tr.get('wall_time_s', 0) / 60:.0f} min on "
        f"{tr.get('hardware', '?')}",
    ]
    init = tr.get("initialised_from")
    if isinstance(init, dict):
        lines.append(
            f"  fine-tuned from: {init.get('name', '?')} (sha256 "
            f"{str(init.get('sha256', '?'))[:12]}, {init.get('iterations', '?')} "
            f"iterations)"
        )
    lineage = card.get("lineage")
    if isinstance(lineage, list) and lineage:
        minutes = [e.get("minutes_run") for e in lineage if isinstance(e, dict)]
        numbers = [m for m in minutes if isinstance(m, (int, float))]
        total = (
            f", {sum(numbers):.0f} min of training in all"
            if minutes and len(numbers) == len(minutes)
            else ""
        )
        lines.append(
            f"  lineage: {len(lineage)} training runs, each fine-tuning the one "
            f"before{total} (card: lineage)"
        )
    lines += [
        f"  validation: {val.get('summary', val)}",
        f"  licence: {card.get('licence', '?')}",
    ]
    return "\n".join(lines)


def _describe_ensemble(card: dict, path: Path) -> str:
    val = card.get("validation", {})
    lines = [f"{card.get('name', path.stem)}: {card.get('task', 'stage-1 networks')}"]
    lines.append(
        f"  ensemble: the mean foreground probability of {len(card[ENSEMBLE_FIELD]['members'])} "
        f"networks, input grid {tuple(card['grid_shape'])}"
    )
    for entry in card[ENSEMBLE_FIELD]["members"]:
        member = path.parent / str(entry.get("file"))
        try:
            sub = read_card(member)
            what = (
                f"cue {sub.get('cue')}, {sub.get('training', {}).get('iterations', '?')} iterations"
            )
        except ModelError as exc:
            what = f"unreadable: {exc}"
        lines.append(f"    {member.stem} ({what}; sha256 {str(entry.get('sha256'))[:12]})")
    lines += [
        f"  data: {card.get('data', {}).get('description', '?')}",
        f"  validation: {val.get('summary', val)}",
        f"  licence: {card.get('licence', '?')}",
    ]
    return "\n".join(lines)


def clear_cache() -> None:
    """Forget every cached model (the next `load_model` reads the files again)."""
    with _LOCK:
        _CACHE.clear()
