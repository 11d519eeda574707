"""Write the card of a stage-1 ensemble: member models averaged by `predict_probability`.

    python scripts/ensemble_card.py NAME MEMBER.pt [MEMBER.pt ...] --out DIR
        [--fp16 CUE[,CUE...]] [--validation TEXT]

Each member (a ``.pt`` with its card beside it) is copied into DIR as ``NAME_CUE.pt`` (and
its card, renamed); the members whose cue ``--fp16`` names are stored as float16 (half the
file; `midseg.models` casts them back to float32 when it loads them), the others as they
are. A member already in DIR under that name is used as it is. The shipped ``2d``:
``python scripts/ensemble_card.py 2d runs/pool2d/2d.pt runs/cues2d/euclidean/2d_euclidean.pt
runs/cues2d/gaussian/2d_gaussian.pt --out DIR --fp16 euclidean,gaussian``
(`scripts/train_pool_models.sh ensemble2d`). The card ``DIR/NAME.json`` records the members'
files and sha256 (`midseg.models.load_model` refuses a member whose sha256 differs), their
cues, the union of their training data and licences, and each member's training command
(from its card). ``--validation`` is the text of the card's validation summary (what the
ensemble scored, with the command that measured it).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from midseg.io import file_sha256
from midseg.models import CARD_FORMAT, read_card


def _copy_member(pt: Path, out: Path, name: str, fp16: bool) -> Path:
    card = read_card(pt)
    dest = out / f"{name}_{card['cue']}.pt"
    if dest.resolve() == pt.resolve() or dest.exists():
        return dest
    if fp16:
        import torch

        state = torch.load(pt, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, dest)
    else:
        shutil.copyfile(pt, dest)
    card = dict(card, name=dest.stem)
    card["weights"] = {
        "file": dest.name,
        "dtype": "float16 (cast to float32 on load)" if fp16 else "float32",
        "bytes": dest.stat().st_size,
        "sha256": file_sha256(dest),
        "copied_from": {"file": str(pt), "sha256": file_sha256(pt)},
    }
    dest.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return dest


def _licence(files, cards) -> str:
    """The members' licences: one text when they agree, else each member's."""
    texts = {c.get("licence", "?") for c in cards}
    if len(texts) == 1:
        return f"every member: {texts.pop()}"
    return " | ".join(f"{f.stem}: {c.get('licence', '?')}" for f, c in zip(files, cards))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("members", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fp16", default="", help="comma-separated cues of members stored as float16")
    ap.add_argument("--validation", default="")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    half = {c for c in (a.fp16 or "").split(",") if c}
    files = [_copy_member(pt, a.out, a.name, read_card(pt)["cue"] in half) for pt in a.members]
    cards = [read_card(f) for f in files]
    if len({c["cue"] for c in cards}) != len(cards):
        raise SystemExit("members must have different cues (their files are named by cue)")
    first = cards[0]
    sets: dict[str, dict] = {}
    for c in cards:
        for s in (c.get("data") or {}).get("sets", []):
            sets.setdefault(s["set"], {"set": s["set"], "licence": s.get("licence")})
    card = {
        "format": CARD_FORMAT,
        "format_version": 1,
        "name": a.name,
        "task": "stage-1 initial segmentation from interior margin points (ensemble)",
        "ensemble": {
            "combine": "mean",
            "members": [
                {"file": f.name, "sha256": file_sha256(f), "cue": c["cue"]}
                for f, c in zip(files, cards)
            ],
        },
        "spatial_dims": first["spatial_dims"],
        "grid_shape": first["grid_shape"],
        "cue": "ensemble",
        "image_channels": first["image_channels"],
        "margin": first.get("margin"),
        "normalisation": first.get("normalisation"),
        "output": "the mean of the members' foreground probabilities",
        "data": {
            "description": "the union of the members' training data (each member's card)",
            "sets": list(sets.values()),
        },
        "training": {
            "members": [
                {
                    "name": f.stem,
                    "command": c.get("command"),
                    "seed": c.get("training", {}).get("seed"),
                    "iterations": c.get("training", {}).get("iterations"),
                }
                for f, c in zip(files, cards)
            ],
            "card_command": "python scripts/ensemble_card.py "
            + " ".join([a.name] + [str(p) for p in a.members] + ["--out", str(a.out)])
            + (f" --fp16 {a.fp16}" if a.fp16 else ""),
        },
        "validation": {
            "summary": a.validation or "see the members' cards",
            "members": {
                f.stem: c.get("validation", {}).get("summary") for f, c in zip(files, cards)
            },
        },
        "licence": _licence(files, cards),
    }
    path = a.out / f"{a.name}.json"
    path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
