"""edge_ocr.modelbuild.sensitivity on a real model: the tiny recognizer, a few calib/ lines, a few layers.

What a maintainer relies on when choosing which layers to keep FP32: the ranking names nodes of the graph
the quantizer sees (so they can go into nodes_to_exclude as printed), and keeping the worst one FP32 does
bring the INT8 model closer to FP32 than quantizing everything.
"""

from __future__ import annotations

import dataclasses
import json

import onnx
import pytest

from edge_ocr.modelbuild import sensitivity
from edge_ocr.modelbuild.build import ranges_file
from edge_ocr.modelbuild.sets import model_set

SET, ROLE = "ppocrv6-tiny", "rec"
LAYERS = 8  # the first layers of the backbone (stem, first blocks): where the recipes' culprits were


@pytest.fixture(scope="module")
def tiny_rec(models_dir, eval_data):
    from edge_ocr.models import load_manifest

    entry = load_manifest(models_dir)["sets"][SET]["models"][ROLE]["variants"]["fp32"]
    fp32 = (models_dir / entry["file"]).read_bytes()
    # Nothing excluded: the ranking must find the culprits the recipe excludes by hand.
    recipe = dataclasses.replace(model_set(SET).roles[ROLE].recipe, nodes_to_exclude=())
    ranges = json.loads(ranges_file(SET, ROLE).read_text(encoding="utf-8"))["ranges"]
    ref = sensitivity.Reference(fp32, sensitivity.calib_inputs(ROLE, eval_data, 6), "ctc")
    return fp32, recipe, ranges, ref


def test_the_ranking_names_real_nodes_worst_first(tiny_rec):
    fp32, recipe, ranges, ref = tiny_rec
    names = [n for n, _, _ in sensitivity.quantizable(fp32, recipe)]
    costs = sensitivity.rank(fp32, recipe, ranges, ref, nodes=names[:LAYERS])

    assert [c.node for c in costs] != [] and {c.node for c in costs} == set(names[:LAYERS])
    graph = {n.name: n.op_type for n in onnx.load_from_string(fp32).graph.node}
    for c in costs:
        assert graph.get(c.node) == c.op, f"{c.node} is not a {c.op} of the FP32 graph"
        assert c.detail.startswith("w ")
    divergences = [c.divergence for c in costs]
    assert divergences == sorted(divergences, reverse=True)
    assert divergences[0] > 0 and divergences[0] > divergences[-1]


def test_keeping_the_worst_layer_fp32_brings_int8_closer_to_fp32(tiny_rec):
    # Ranked as the search excludes (the recipe with the node also FP32): a layer's cost alone does not
    # add up (errors cancel), so "only" may name a layer whose exclusion does not help.
    fp32, recipe, ranges, ref = tiny_rec
    names = [n for n, _, _ in sensitivity.quantizable(fp32, recipe)]
    worst = sensitivity.rank(fp32, recipe, ranges, ref, nodes=names[:LAYERS], mode="without")[0]

    everything, _ = ref.divergence(sensitivity.int8_bytes(fp32, recipe, ranges, ()))
    without_worst, _ = ref.divergence(sensitivity.int8_bytes(fp32, recipe, ranges, (worst.node,)))
    fp32_itself, changed = ref.divergence(fp32)

    assert fp32_itself < 1e-9 and changed == 0
    assert without_worst < everything, (worst, without_worst, everything)


def test_the_command_line_reaches_the_tool():
    from edge_ocr.cli import build_parser

    argv = ["models", "sensitivity", "--model-set", SET, "--role", "det", "--try", "Conv.3,MatMul.12",
            "--try", "", "--rank-by", "without"]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert (args.action, args.role, args.rank_by, args.lines) == ("sensitivity", "det", "without", 0)
    assert args.try_ == ["Conv.3,MatMul.12", ""]
