"""Command line: `edge-ocr ocr|bench|models|config|run|serve`. The only place errors become exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from edge_ocr import __version__, allocator, logs
from edge_ocr.errors import EdgeOcrError, missing_extra

log = logging.getLogger("edge_ocr")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
METER_CHARSET = "0123456789.-"  # what a default numeric region reads (plausibility parses it)


def _expand(paths: list[str]) -> Iterator[Path]:
    """Files as given; directories expanded to the images inside them (sorted, recursive)."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and there are many inputs."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = total > 1 and sys.stderr.isatty()
        self.done = 0

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _engine_from_args(args: argparse.Namespace):  # -> Engine, imported lazily for a fast --help
    from edge_ocr.pipeline import Engine, EngineSettings

    kwargs = {"threads": args.threads, "use_cls": not args.no_cls, "precision": args.precision,
              "model_set": args.model_set}  # fmt: skip
    if getattr(args, "meter", False):  # crops of meters only: the general models are not loaded
        kwargs.update(general=False, meter=True)
    # Only whole pages are turned upright: lines and crops load no orientation model.
    kwargs["orientation"] = not (getattr(args, "line", False) or getattr(args, "no_orientation", False))
    if args.models:
        kwargs["models_dir"] = Path(args.models)
    return Engine(EngineSettings(**kwargs))


def cmd_ocr(args: argparse.Namespace) -> int:
    from edge_ocr.decode import read_image
    from edge_ocr.draw import draw_result
    from edge_ocr.preprocess import suppress_ghosts

    floor = args.min_confidence
    if floor is None and args.meter:
        from edge_ocr.config.camera import METER_MIN_CONFIDENCE

        floor = METER_MIN_CONFIDENCE
    engine = _engine_from_args(args)
    inputs = list(_expand(args.paths))
    progress = _Progress(len(inputs))
    failures = 0
    if args.draw:
        Path(args.draw).mkdir(parents=True, exist_ok=True)
    for path in inputs:
        try:
            image = read_image(path, max_pixels=args.max_pixels)
            if args.suppress_ghosts:
                image = suppress_ghosts(image)
            if args.meter:
                result = engine.run_meter(image, args.charset or METER_CHARSET)
            elif args.line:
                result = engine.run_line(image, args.charset, upright=args.suppress_ghosts)
            else:
                result = engine.run(image, args.charset)
            if floor:
                result = result.sure(floor)
        except EdgeOcrError as exc:
            failures += 1
            if args.json:
                print(json.dumps({"source": str(path), "error": str(exc)}, ensure_ascii=False), flush=True)
            else:
                print(f"edge-ocr: {path}: {exc}", file=sys.stderr)
            progress.step()
            continue
        if args.json:
            model = engine.models_for("meter" if args.meter else "general" if args.line else "page")
            record = {"source": str(path), **result.to_dict(), "model": model}
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            if len(inputs) > 1:
                print(f"==> {path} <==")
            for r in result.rejected:  # an empty line on stdout: scripts still get one a line read
                print(f"edge-ocr: {path}: rejected {r.line.text!r}: {r.detail} (--min-confidence 0 shows it)",
                      file=sys.stderr)  # fmt: skip
            print(result.text, flush=True)
        if args.draw:
            draw_result(image, result, Path(args.draw) / (path.stem + ".png"))
        progress.step()
    if not inputs:
        print("edge-ocr: no input images", file=sys.stderr)
        return 2
    return 1 if failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    from edge_ocr.errors import require_extra

    # Pillow is imported late, in the renderer's worker thread: checked here, not after a traceback.
    require_extra("edge-ocr train", "train", "torch", "PIL")
    from edge_ocr.train import cli as train_cli

    return train_cli.run(args)


def cmd_models(args: argparse.Namespace) -> int:
    from edge_ocr import models

    where = models.locate_models_dir(Path(args.models) if args.models else None)
    models_dir = where.path
    if args.action == "path":
        print(models_dir)
        print(f"because: {where.why}", file=sys.stderr)
        return 0
    if args.action == "verify":
        return _verify(models_dir, args)
    from edge_ocr import modelbuild

    if not args.verbose:
        _quiet_build_log(models_dir)
    wheels = [Path(w) for w in args.wheel or []]
    if args.action == "build":
        sets = tuple(args.model_set) if args.model_set else None
        if args.meter_model:  # install a fine-tuned meter model: only that set is rebuilt
            sets = ("meter",)
        custom = Path(args.meter_model) if args.meter_model else None
        modelbuild.build(models_dir, wheels, sets=sets, meter_model=custom)
    elif args.action == "sensitivity":
        from edge_ocr.modelbuild.sensitivity import run

        name = (args.model_set or [modelbuild.DEFAULT_SET])[0]
        tries = [[n for n in t.split(",") if n] for t in args.try_ or []]
        return run(models_dir, Path(args.data), name, args.role, lines=args.lines or None, mode=args.rank_by,
                   tries=tries, calib=args.calib)  # fmt: skip
    else:
        for name in args.model_set or [modelbuild.DEFAULT_SET]:
            if name == "meter":
                from edge_ocr.modelbuild.calibrate import calibrate_meter

                calibrate_meter(models_dir)
                continue
            modelbuild.calibrate(models_dir, Path(args.data), wheels, set_name=name, roles=tuple(args.roles))
    return 0


def _quiet_build_log(models_dir: Path) -> None:
    """A model build shows edge-ocr's own progress and summary lines only; the quantizer's chatter
    (several hundred "Increased scale..." lines) goes to build.log beside the models (--verbose: all)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / "build.log"
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(lambda r: r.name.startswith("edge_ocr") or r.levelno >= logging.ERROR)
    detail = logging.FileHandler(path, mode="w", encoding="utf-8")
    detail.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(detail)
    print(f"edge-ocr: the quantizer's details go to {path} (--verbose shows them here)", file=sys.stderr)


def _verify(models_dir: Path, args: argparse.Namespace) -> int:
    """Every file of every set against its sha256, then what this device runs for the default set
    (or --model-set), with precision auto unless --precision says otherwise, and why."""
    from edge_ocr import models
    from edge_ocr.pipeline import Engine, EngineSettings

    manifest = models.load_manifest(models_dir)
    names = args.model_set or list(manifest.get("sets") or {})
    for name in names:
        _, entry = models.set_entry(manifest, models_dir, name)
        for role in entry["models"]:
            for variant in entry["models"][role]["variants"]:
                f = models.resolve(models_dir, role, variant, manifest, name)
                print(f"{name} {role} {variant}: {f.path.name} sha256 ok")
    for name in args.model_set or [None, "meter"]:
        meter = name == "meter"
        if (name or manifest.get("default_set")) not in manifest["sets"] and not args.model_set:
            continue  # a models folder with some sets only (e.g. the meter set alone)
        engine = Engine(EngineSettings(models_dir=models_dir, model_set=None if meter else name,
                                       precision=args.precision, threads=args.threads, general=not meter,
                                       meter=meter))  # fmt: skip
        for role, c in engine.choices.items():
            label = "meter" if meter else "orientation" if role == "orient" else engine.model_set
            print(f"{label} {role} runs {c.precision} ({c.model.path.name}): {c.why}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.fleet:
        from edge_ocr.bench import fleet as bench_fleet

        return bench_fleet.main(["--faults"] if args.fleet_faults else [])
    if args.meters:
        from edge_ocr.bench import meters as bench_meters

        return bench_meters.main(args)
    if args.api:
        from edge_ocr.bench import api as bench_api

        return bench_api.main(["--data", str(args.data)] + (["--models", args.models] if args.models else []))
    if args.daemon:
        from edge_ocr.bench import daemon as bench_daemon

        argv = ["--data", str(args.data), "--kind", args.daemon_kind, "-n", str(args.daemon_n)]
        return bench_daemon.main(argv)
    from edge_ocr.bench import ocr as bench

    return bench.run(args)


def cmd_config(args: argparse.Namespace) -> int:
    from edge_ocr.config import json_schema_text, validate_file

    if args.action == "schema":
        print(json_schema_text(), end="")
        return 0
    cfg = validate_file(Path(args.file), sources_required=not args.serve)
    print(f"{args.file}: ok ({len(cfg.sources)} source(s), device_id {cfg.device_id})")
    if args.show:
        import yaml

        print(yaml.safe_dump(cfg.redacted(), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge_ocr.daemon.core import run_daemon

    return run_daemon(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    from edge_ocr.daemon.serve import run_serve

    return run_serve(Path(args.config) if args.config else None)


def cmd_ingest(args: argparse.Namespace) -> int:
    from edge_ocr.ingest.config import load_ingest_config
    from edge_ocr.ingest.service import run

    given = {"mqtt": args.mqtt, "dsn": args.dsn, "topic_prefix": args.prefix, "client_id": args.client_id,
             "share_group": args.group, "http": args.http}  # fmt: skip
    overrides: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    for key in ("share_group", "http"):  # `--http none` turns it off (None), it is not "not given"
        if str(overrides.get(key, "")).lower() in ("none", "off"):
            overrides[key] = None
    return run(load_ingest_config(Path(args.config) if args.config else None, overrides))


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability from 0 to 1")
    return value


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model (default 1)")
    p.add_argument(
        "--precision", choices=["auto", "fp32", "int8"], default="auto",
        help="auto (default): INT8 where it passed the accuracy gate and is faster on this CPU",
    )  # fmt: skip
    p.add_argument("--model-set", help="ppocrv6-small (default), ppocrv6-tiny or ppocrv4-mobile")
    p.add_argument("--no-cls", action="store_true", help="skip the 180-degree line classifier")
    p.add_argument("--models", help="models directory (default: `edge-ocr models path`)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-ocr", description="On-device OCR daemon and tools.")
    parser.add_argument("--version", action="version", version=f"edge-ocr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(heap_policy=True)  # `allocator`'s, for every command that reads images
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ocr", help="read text from image files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories")
    p.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    p.add_argument("--line", action="store_true", help="each input is one text line (no detection)")
    p.add_argument("--no-orientation", action="store_true",
                   help="do not turn pages upright (0/90/180/270) before reading them")  # fmt: skip
    p.add_argument("--draw", metavar="DIR", help="write each image with boxes and text drawn over it")
    p.add_argument(
        "--charset", metavar="CHARS", help="read only these characters (e.g. 0123456789. for a meter)"
    )
    p.add_argument(
        "--suppress-ghosts",
        action="store_true",
        help="an LCD: whiten its faint unlit segments first (with --line: read it upright)",
    )
    p.add_argument(
        "--meter", action="store_true",
        help="each input is a meter's display or counter crop: read it as a default numeric region does "
        "(the meter model, digits, point and minus, upright); implies --line",
    )  # fmt: skip
    p.add_argument(
        "--min-confidence", type=_unit_float, metavar="P",
        help="reject a line whose mean or weakest character probability is below P, as a camera region's "
        "min_confidence does: it is left out of the text and listed under `rejected` (--json). Default: "
        "with --meter, a default numeric region's floor (0.3); else none. 0 rejects nothing",
    )  # fmt: skip
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="refuse larger images (bombs)")
    _add_engine_options(p)
    p.set_defaults(func=cmd_ocr)

    p = sub.add_parser("train", help="train or fine-tune our own models (needs the [train] extra)")
    tsub = p.add_subparsers(dest="model", required=True)
    t = tsub.add_parser("meter", help="the meter CRNN: from the recipe and seed, or fine-tuned on crops")
    t.add_argument("--out", required=True, metavar="FILE", help="the FP32 ONNX to write")
    t.add_argument(
        "--from", dest="from_dir", metavar="DIR",
        help="fine-tune the installed meter model on DIR's labelled crops (labels.tsv: FILE<TAB>TEXT; the "
        "daemon's <state_dir>/training/<source> folders are such)",
    )  # fmt: skip
    t.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    t.add_argument("--seed", type=int, help="seed (default: the recipe's)")
    t.add_argument(
        "--init", metavar="FILE", help="--from: start from this FP32 ONNX (default: the shipped one)"
    )
    t.add_argument(
        "--base", metavar="FILE",
        help="skip the recipe's first phase: refine this FP32 ONNX, that phase's export (FILE.base.onnx)",
    )  # fmt: skip
    t.add_argument(
        "--refined", metavar="FILE",
        help="skip the recipe's first two phases: run its last on this FP32 ONNX, the second's export "
        "(FILE.refined.onnx)",
    )  # fmt: skip
    t.add_argument("--eval-per-kind", type=int, default=300, help="held-back crops per kind (default 300)")
    t.add_argument("--card", metavar="FILE", help="also write the model card (sha256, recipe, figures) here")
    t.set_defaults(func=cmd_train, heap_policy=False)  # a trainer, not an image reader: see `allocator`

    p = sub.add_parser("models", help="build, calibrate, rank INT8 sensitivity or verify the model files")
    p.add_argument("action", choices=["build", "calibrate", "sensitivity", "verify", "path"])
    p.add_argument("--models", help="models directory (default: `edge-ocr models path`)")
    p.add_argument(
        "--wheel", action="append", metavar="PATH",
        help="build: use this local source wheel (rapidocr / rapidocr_onnxruntime) instead of pip download",
    )  # fmt: skip
    p.add_argument("--model-set", action="append", help="only this model set (repeatable; default: all)")
    p.add_argument(
        "--meter-model", metavar="FILE",
        help="build: install this fine-tuned meter model (from `edge-ocr train meter --from`) instead of the "
        "shipped one; a later build without it restores the shipped model",
    )  # fmt: skip
    p.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto", help="verify: as run")
    p.add_argument("--threads", type=int, default=1, help="verify: onnxruntime threads, as run")
    p.add_argument("--data", default="../shared/eval", help="calibrate: the eval data directory")
    p.add_argument(
        "--roles", nargs="+", choices=("det", "rec", "cls"),
        default=["det", "rec"], help="calibrate: only these models (default: det rec)",
    )  # fmt: skip
    p.add_argument("--role", choices=("det", "rec"), default="rec",
                   help="sensitivity: which role's layers to rank and keep FP32 (default rec)")  # fmt: skip
    p.add_argument("--lines", type=int, default=0,
                   help="sensitivity: lines per gate set searched, spread evenly (default 0: all)")
    p.add_argument("--calib", type=int, default=100,
                   help="sensitivity: calib/ inputs the ranking compares on (default 100; det has 24)")
    p.add_argument("--try", dest="try_", action="append", metavar="NODE,NODE",
                   help="sensitivity: no ranking; measure the recipe with these nodes also FP32 (repeatable)")
    p.add_argument("--rank-by", choices=("only", "without"), default="only",
                   help="sensitivity: rank each node quantized alone, or the recipe with it kept FP32")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("config", help="check a configuration file")
    csub = p.add_subparsers(dest="action", required=True)
    v = csub.add_parser("validate", help="validate FILE without starting anything")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--show", action="store_true", help="print the effective config (secrets redacted)")
    v.add_argument("--serve", action="store_true", help="a config for `edge-ocr serve` (no sources needed)")
    v.set_defaults(func=cmd_config)
    sc = csub.add_parser("schema", help="print the JSON Schema of the configuration (for editors)")
    sc.set_defaults(func=cmd_config)

    p = sub.add_parser("run", help="run the daemon (embedded default without --config)")
    p.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "ingest", help="the fleet's consumer: results from MQTT into PostgreSQL, exactly once (needs [fleet])"
    )
    p.add_argument("--config", "-c", metavar="FILE", help="YAML settings (the flags' keys); flags win")
    p.add_argument("--mqtt", metavar="URL", help="the broker, mqtt://HOST:PORT (key: mqtt)")
    p.add_argument("--dsn", metavar="DSN", help="postgresql://USER@HOST:PORT/DB (key: dsn)")
    p.add_argument("--prefix", metavar="P", help="the devices' topic prefix (key: topic_prefix; edge-ocr)")
    p.add_argument("--client-id", metavar="ID", help="persistent session (key: client_id; edge-ocr-ingest)")
    p.add_argument("--group", metavar="G", help="shared-subscription group, or none (key: share_group)")
    p.add_argument("--http", metavar="HOST:PORT", help="/healthz and /metrics, or none (127.0.0.1:9108)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("serve", help="serve POST /api/ocr and the web page alone (no folder, no MQTT)")
    p.add_argument("--config", "-c", metavar="FILE", help="YAML configuration (its http: and engine:)")
    p.set_defaults(func=cmd_serve)

    try:
        from edge_ocr.bench import options as bench_options

        p = sub.add_parser("bench", help="accuracy and speed on the eval data")
        bench_options.add_arguments(p)
        p.add_argument(
            "--daemon", action="store_true", help="files/s through the daemon vs the engine alone, latency"
        )
        p.add_argument(
            "--api", action="store_true", help="requests/s, p50/p95 of POST /api/ocr vs the engine alone"
        )
        p.add_argument(
            "--fleet", action="store_true",
            help="results/s, latency (median, p95) and rows/s per ingester through devices -> site brokers ->"
            " core -> ingesters -> PostgreSQL (needs mosquitto, postgresql and the [fleet] extra)",
        )  # fmt: skip
        p.add_argument("--fleet-faults", action="store_true",
                       help="--fleet: cut a bridge link, kill an ingester in the steady phase")  # fmt: skip
        p.add_argument("--daemon-kind", choices=["pages", "lines"], default="pages")
        p.add_argument("--daemon-n", type=int, default=12, help="files in the daemon throughput burst")
        p.add_argument(
            "--meters", action="store_true",
            help="the meter model vs the general models (and RapidOCR 3.10) on held-back rendered meter "
            "crops: exact, CER, ms per crop, per kind",
        )  # fmt: skip
        p.add_argument(
            "--meters-n", type=int, metavar="N", help="--meters: rendered crops per kind (default 300)"
        )
        p.add_argument(
            "--meters-dir", metavar="DIR", help="--meters: also read a folder of real crops (labels.tsv)"
        )
        p.set_defaults(func=cmd_bench)
    except ImportError:  # bench module not present in this build
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(logging.DEBUG if args.verbose else logging.INFO)
    if args.heap_policy:
        log.debug("heap: %s", allocator.configure())
    try:
        try:
            return int(args.func(args) or 0)
        except ImportError as exc:
            # An optional extra that is not installed: one line naming it, not a traceback.
            missing = missing_extra(f"edge-ocr {args.command}", exc)
            if missing is None:
                raise
            raise missing from exc
    except EdgeOcrError as exc:
        print(f"edge-ocr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error of ours; silence the interpreter's report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
