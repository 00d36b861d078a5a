"""The optimized-graph cache: a restart loads this machine's optimized graphs instead of optimizing
again, reads exactly as an uncached engine does, and never loads a damaged cached file."""

from __future__ import annotations

import logging

import pytest

from edge_ocr.decode import read_image
from edge_ocr.models import resolve
from edge_ocr.pipeline import Engine, EngineSettings


@pytest.fixture(scope="module")
def page(eval_data):
    return read_image(eval_data / "pages" / "sroie_322.jpg")


@pytest.fixture(scope="module")
def uncached(models_dir, page):
    # FP32 as the cached engines below: under `auto` a loaded CPU may time INT8 faster, and INT8 reads a
    # near-tie character differently ('4015o' for '40150'), which is not what this file tests.
    return Engine(EngineSettings(models_dir=models_dir, graph_cache=None, precision="fp32")).run(page)


def _texts(result):
    return [(ln.text, ln.box) for ln in result.lines]


def test_second_engine_loads_the_cached_graphs_and_reads_the_same(models_dir, tmp_path, page, uncached):
    cache = tmp_path / "graphs"
    first = Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    graphs = sorted(cache.glob("*.ort.onnx"))
    # det, rec, cls and the page orientation model
    assert len(graphs) == 4 and len(list(cache.glob("*.json"))) == 4
    assert not list(cache.glob(".*.tmp")), "no staging file is left behind"
    stamps = {p: p.stat().st_mtime_ns for p in graphs}
    second = Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    assert {p: p.stat().st_mtime_ns for p in graphs} == stamps, "the cached graphs were reused, not rewritten"
    assert _texts(first.run(page)) == _texts(uncached)
    assert _texts(second.run(page)) == _texts(uncached)


def test_a_damaged_cached_graph_is_rebuilt_not_loaded(models_dir, tmp_path, page, uncached, caplog):
    cache = tmp_path / "graphs"
    Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    (rec,) = cache.glob(f"{resolve(models_dir, 'rec').path.stem}-*.ort.onnx")
    data = bytearray(rec.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte deep inside the weights: still parses, reads wrong
    rec.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="edge_ocr"):
        engine = Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    assert any("does not match its checksum" in r.getMessage() for r in caplog.records)
    assert _texts(engine.run(page)) == _texts(uncached)
    assert rec.read_bytes() != bytes(data), "the damaged file was replaced by a rebuilt one"


def test_a_cache_path_that_is_a_file_only_costs_start_up_time(models_dir, tmp_path, page, uncached):
    cache = tmp_path / "not-a-dir"
    cache.write_text("x")
    engine = Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    assert _texts(engine.run(page)) == _texts(uncached)


def test_a_new_model_build_replaces_its_old_cached_graphs(models_dir, tmp_path):
    cache = tmp_path / "graphs"
    Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    # A graph left by an earlier build of the same model (another sha256), as after an upgrade.
    rec_model = resolve(models_dir, "rec")
    (rec,) = cache.glob(f"{rec_model.path.stem}-*.ort.onnx")
    sha16 = rec_model.sha256[:16]
    assert sha16 in rec.name
    stale = rec.with_name(rec.name.replace(sha16, "0" * 16))
    stale.write_bytes(b"old")
    stale.with_suffix("").with_suffix(".json").write_text("{}")
    for p in cache.glob(f"{rec_model.path.stem}-*.ort.onnx"):
        if p != stale:
            p.unlink()  # force this model's graph to be written again
    Engine(EngineSettings(models_dir=models_dir, graph_cache=cache, precision="fp32"))
    assert not stale.exists(), "the old build's graph was removed when the new one was written"
    assert len(list(cache.glob("*.ort.onnx"))) == 4  # det, rec, cls, orientation
