"""`edge-ocr train meter`: reproduce the shipped meter model from its recipe and seed, or fine-tune it
on a folder of labelled crops, and print the held-back figures next to the committed ones."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_ocr.modelbuild import meter as shipped
from edge_ocr.train import meter, render


def run(args: argparse.Namespace) -> int:
    from edge_ocr.train.fonts import require_fonts

    require_fonts()
    from_dir = Path(args.from_dir) if args.from_dir else None
    init = Path(args.init) if args.init else (shipped.MODEL if from_dir else None)
    if init is not None and init == shipped.MODEL:
        shipped.source_bytes()  # refuse an altered shipped model before spending minutes on it
    base = _phase_export("--base", args.base, from_dir, "the first phase's export (FILE.base.onnx)")
    refined = _phase_export("--refined", args.refined, from_dir, "the second's export (FILE.refined.onnx)")
    report = meter.run(Path(args.out), steps=args.steps, seed=args.seed, from_dir=from_dir, init=init,
                       base=base, refined=refined, eval_per_kind=args.eval_per_kind)  # fmt: skip
    if args.card:
        write_card(report, Path(args.card))
    card = shipped.card()
    committed = card.get("held_back") or {}
    print(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=1))
    print(f"{'kind':<10} {'exact':>7} {'cer':>7}   committed exact / cer")
    for kind, fig in report["held_back"].items():
        ref = committed.get(kind) or {}
        print(f"{kind:<10} {fig['exact']:7.4f} {fig['cer']:7.4f}   "
              f"{ref.get('exact', float('nan')):.4f} / {ref.get('cer', float('nan')):.4f}")  # fmt: skip
    same_recipe = (
        from_dir is None
        and report["steps"] == card.get("steps")
        and report["seed"] == card.get("seed")
        and args.eval_per_kind == meter.EVAL_PER_KIND
    )
    if not same_recipe:
        print("(not the committed recipe: a smoke run, another seed or a fine-tune; no tolerance check)")
        return 0
    off = meter.within_tolerance(report["held_back"], committed)
    if off:
        print("differs from the committed model beyond the tolerance " + json.dumps(meter.TOLERANCE) + ":")
        for line in off:
            print("  " + line)
        return 1
    print(f"reproduced: every figure within {json.dumps(meter.TOLERANCE)} of the committed model")
    return 0


def _phase_export(flag: str, value: str | None, from_dir: Path | None, what: str) -> Path | None:
    """A phase's export to start the recipe from; a typo stops at once, not after an hour of training."""
    if not value:
        return None
    path = Path(value)
    if from_dir is not None or not path.is_file():
        from edge_ocr.errors import ConfigError

        raise ConfigError(
            f"{flag} {path}: " + ("a fine-tune (--from) has no phases" if from_dir else "no such file"),
            remedy=f"{flag} takes {what} of `train meter --out FILE`",
        )
    return path


def write_card(report: dict, path: Path) -> None:
    """The model card `build` checks the shipped model against: sha256, recipe, seed, figures."""
    import platform

    from edge_ocr.models import sha256_file
    from edge_ocr.train.fonts import FACE_PACKAGES

    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in _cpuinfo() if ln.startswith("flags")), [])
    doc = {
        "model": Path(report["model"]).name,
        "sha256": sha256_file(Path(report["model"])),
        "command": f"edge-ocr train meter --out {Path(report['model']).name}",
        "seed": report["seed"],
        "steps": report["steps"],
        "base_sha256": report["base_sha256"],
        "refine_steps": report["refine_steps"],
        "refined_sha256": report["refined_sha256"],
        "varied_steps": report["varied_steps"],
        "torch": report["torch"],
        "recipe": meter.RECIPE,
        # the crops the recipe draws depend on these being installed (fonts.require_fonts checks)
        "font_packages": list(FACE_PACKAGES),
        "tolerance": meter.TOLERANCE,
        "trained_on": {"cpu": cpu, "vnni": any("vnni" in f for f in flags), "machine": platform.machine(),
                       "seconds": report["train_seconds"]},  # fmt: skip
        "loss_first_last": report["loss_first_last"],
        "held_back": report["held_back"],
        "held_back_data": f"{meter.EVAL_PER_KIND} rendered crops per kind, seeds {meter.EVAL_SEED} + the "
        "kind's index (never drawn in training); drums turning as render.MOTIONS \"even\" draws them",
        "held_back_scoring": "read by the runtime's MeterReader (the crop cut to the rows anything is "
        "drawn on where a loose box left plain face above and below; turning drums decided jointly, a weak "
        "reading or one that left a character half seen looked at again in four or five framings, the "
        "fifth round the digits' band, a sure one read a quarter wider and looked at again so when that "
        "reads otherwise, and one surer still taken as read); a drum reading is right if it is the value of "
        "either "
        "neighbouring drum position when the last drum is more than "
        f"{render.MOTION:.0%} of a digit away from both (in motion), else only the nearest",
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
