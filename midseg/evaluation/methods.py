"""The methods the robot user drives: midseg through `Session`, the classical peers.

Every method satisfies `Method`: ``start`` computes stage 1 from the margin points,
``update`` adds one corrective click. `make_methods` builds them from names.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..session import Session

__all__ = [
    "METHOD_NAMES",
    "MIDSEG_VARIANTS",
    "Method",
    "SessionMethod",
    "PeerMethod",
    "make_methods",
]

#: Built-in method names: midseg's refinements, then the classical peers.
METHOD_NAMES = (
    "midseg",
    "midseg-global",
    "midseg-gc",
    "midseg-paper",
    "random-walker",
    "graph-cut",
    "region-growing",
    "geodesic",
)

#: midseg's refinement variants: method name -> `Session` method and report label.
MIDSEG_VARIANTS = {
    "midseg": ("ifgc", "IF-GC, click-local"),
    "midseg-global": ("ifgc-global", "IF-GC, all clicks fused with the CNN map"),
    "midseg-gc": ("gc", "GC"),
    "midseg-paper": ("ifgc-paper", "IF-GC, Eq. 7 as printed"),
}


@runtime_checkable
class Method(Protocol):
    """What `midseg.evaluation.run_protocol` needs of a method.

    Attributes
    ----------
    name : str
        Column name in the results (unique among the methods of a run).
    kind : str
        ``"model"`` (a stage-1 network refined by `Session`; gets the guidance
        metrics when it has ``guidance(...)``) or ``"peer"``.

    Optional: ``warm_up(image, points, *, spacing)``, run once untimed before a
    case, and for ``kind == "model"`` ``guidance(image, points, gt, *, spacing)``
    returning (seconds, overlap).
    """

    name: str
    kind: str

    def start(self, image: np.ndarray, points: np.ndarray, *, spacing) -> np.ndarray:
        """Stage 1 from the interior margin points; returns the mask."""
        ...

    def update(self, click) -> np.ndarray:
        """Add one corrective click (`midseg.data_sim.Click`); returns the new mask."""
        ...


class SessionMethod:
    """midseg itself (or a stage-1 model with another cue) driven through `Session`.

    Parameters
    ----------
    name : str
        Column name in the results.
    model : str or path, optional
        Model name or ``.pt`` path (default: the shipped model of the image's
        dimensionality). Loaded once, on first use.
    refine : {"ifgc", "gc"}
        Refinement of `Session` (information fusion + graph cut, or naive graph cut).
    """

    kind = "model"

    def __init__(self, name: str, model=None, refine: str = "ifgc", device: str | None = None):
        self.name, self.model, self.refine_method, self.device = name, model, refine, device
        self._loaded: dict[int, Any] = {}
        self._warm: set[int] = set()
        self._session: Session | None = None

    def __getstate__(self):
        return {**self.__dict__, "_loaded": {}, "_warm": set(), "_session": None}

    def _model(self, ndim: int):
        if ndim not in self._loaded:
            from ..models import load_model

            self._loaded[ndim] = load_model(self.model or f"{ndim}d", device=self.device)
        return self._loaded[ndim]

    def warm_up(self, image: np.ndarray, points: np.ndarray, *, spacing) -> None:
        """Load the model and compile the numba kernels once, outside any timing."""
        if image.ndim in self._warm:
            return
        self._warm.add(image.ndim)
        from ..geodesic import load_kernels

        load_kernels()  # here: a cold cache must not leave timed calls to NumPy meanwhile
        self.start(image, points, spacing=spacing)
        assert self._session is not None  # start made it
        self._session.refine(foreground=[tuple(points[0])])
        for model in getattr(self._model(image.ndim), "members", None) or [self._model(image.ndim)]:
            if model.cue == "none":
                continue
            from ..cues import cue_map
            from ..predict import crop_to_grid

            g = crop_to_grid(
                image,
                points,
                model.grid_shape,
                spacing=spacing,
                margin=getattr(model, "margin", None),
            )
            cue_map(
                model.cue,
                g.image[0],
                g.points,
                spacing=g.spacing,
                **(getattr(model, "cue_params", None) or {}),
            )
        self._session = None

    def start(self, image: np.ndarray, points: np.ndarray, *, spacing) -> np.ndarray:
        from ..io import Image
        from ..session import Session

        session = Session(
            Image(image, spacing=spacing),
            model=self._model(image.ndim),
            method=self.refine_method,
            device=self.device,
        )
        self._session = session
        return session.segment(points)

    def update(self, click) -> np.ndarray:
        fg, bg = ([click.point], []) if click.foreground else ([], [click.point])
        assert self._session is not None, "start() comes before update()"
        return self._session.refine(foreground=fg, background=bg)

    def suggest(self, k: int = 1) -> list:
        """The session's suggested next clicks (`midseg.Session.suggest`)."""
        assert self._session is not None, "start() comes before suggest()"
        return self._session.suggest(k)

    @property
    def box(self):
        """The stage-1 crop box of the current session (`midseg.crop.Box`)."""
        assert self._session is not None, "start() comes before box"
        return self._session.box

    def guidance(
        self, image: np.ndarray, points: np.ndarray, gt: np.ndarray, *, spacing
    ) -> tuple[float, float]:
        """Seconds to compute the model's cue map on its grid, and its overlap with gt.

        An ensemble: the seconds of all its members' cue maps, and the mean of their
        overlaps.
        """
        model = self._model(image.ndim)
        members = getattr(model, "members", None)
        if members:
            found = [self._guidance(m, image, points, gt, spacing) for m in members]
            return sum(f[0] for f in found), float(np.mean([f[1] for f in found]))
        return self._guidance(model, image, points, gt, spacing)

    @staticmethod
    def _guidance(model, image, points, gt, spacing) -> tuple[float, float]:
        from ..predict import CUE_NONE, crop_to_grid

        g = crop_to_grid(
            image, points, model.grid_shape, spacing=spacing, margin=getattr(model, "margin", None)
        )
        gt_grid = g.transform.to_grid(gt.astype(np.uint8), order=0).astype(np.float64)
        if model.cue == CUE_NONE:
            return 0.0, float(gt_grid.mean())
        from ..cues import cue_map

        t0 = time.perf_counter()
        cue = cue_map(
            model.cue,
            g.image[0],
            g.points,
            spacing=g.spacing,
            **(getattr(model, "cue_params", None) or {}),
        )
        sec = time.perf_counter() - t0
        cue = np.asarray(cue, dtype=np.float64)
        total = cue.sum()
        return sec, float((cue * gt_grid).sum() / total) if total > 0 else float("nan")


class PeerMethod:
    """A classical peer of `midseg.peers`: margin points + fg clicks are foreground
    seeds, bg clicks and the relaxed box border background seeds; recomputed each click."""

    kind = "peer"

    def __init__(self, name: str):
        from ..peers import PEERS

        if name not in PEERS:
            raise InvalidInputError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
        self.name = name
        self._fn = PEERS[name]
        self._state: dict = {}

    def __getstate__(self):
        return {"name": self.name, "_state": {}}

    def __setstate__(self, state):
        self.__init__(state["name"])

    def warm_up(self, image: np.ndarray, points: np.ndarray, *, spacing) -> None:
        """Run once untimed per dimensionality (numba compilation, imports)."""
        warm = self.__dict__.setdefault("_warm", set())
        if image.ndim not in warm:
            warm.add(image.ndim)
            from ..geodesic import load_kernels

            load_kernels()  # here: a cold cache must not leave timed calls to NumPy
            self.start(image, points, spacing=spacing)

    def start(self, image: np.ndarray, points: np.ndarray, *, spacing) -> np.ndarray:
        from ..crop import relaxed_bbox

        self._state = {
            "image": image,
            "spacing": spacing,
            "fg": [tuple(p) for p in points],
            "bg": [],
            "box": relaxed_bbox(points, image.shape),
        }
        return self._segment()

    @property
    def box(self):
        """The relaxed box of the margin points (`midseg.crop.Box`)."""
        return self._state["box"]

    def update(self, click) -> np.ndarray:
        self._state["fg" if click.foreground else "bg"].append(tuple(click.point))
        return self._segment()

    def _segment(self) -> np.ndarray:
        s = self._state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # random walker's tolerance notes
            return self._fn(
                s["image"],
                np.array(s["fg"]),
                np.array(s["bg"]).reshape(-1, s["image"].ndim),
                spacing=s["spacing"],
                box=s["box"],
            )


def make_methods(
    names: Sequence[str] = METHOD_NAMES,
    *,
    model=None,
    extra_models: dict[str, str] | None = None,
    device: str | None = None,
) -> list:
    """Method objects for `run_protocol` from names (see `METHOD_NAMES`).

    ``midseg`` / ``midseg-gc`` / ``midseg-paper`` use `model` (default: shipped); each entry
    ``NAME: PATH`` of `extra_models` adds a stage-1 model refined with IF-GC.
    """
    out: list[Method] = []
    for n in names:
        if n in MIDSEG_VARIANTS:
            out.append(SessionMethod(n, model, MIDSEG_VARIANTS[n][0], device))
        else:
            out.append(PeerMethod(n))
    for n, path in (extra_models or {}).items():
        out.append(SessionMethod(n, path, "ifgc", device))
    names_seen = [m.name for m in out]
    if len(set(names_seen)) != len(names_seen):
        raise InvalidInputError(f"method names must be unique, got {names_seen}")
    return out


def _peer_names() -> tuple[str, ...]:
    return tuple(m for m in METHOD_NAMES if m not in MIDSEG_VARIANTS)


def _order(methods: Iterable[str]) -> list[str]:
    known = list(METHOD_NAMES)
    return sorted(
        set(methods), key=lambda m: (known.index(m) if m in known else len(MIDSEG_VARIANTS), m)
    )
