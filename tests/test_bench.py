"""The generate benchmark's breakdown: every second of a run is charged to one named stage."""

import pytest

from selfinstruct import bench
from selfinstruct.models import load_tokenizer

from .conftest import SAMPLE_EN, FakeGenerator, scripted_reply


def test_breakdown_names_where_a_generate_run_spent_its_time(tmp_path, tiny_model):
    engine = FakeGenerator(scripted_reply, load_tokenizer(tiny_model))
    result = bench.bench_pipeline(engine, SAMPLE_EN, 2, tmp_path / "run", model=str(tiny_model))
    stages = result["breakdown"]
    assert stages["engine: writing questions"] > 0 and stages["engine: round trip"] > 0
    assert stages["engine: writing questions"] + stages["engine: round trip"] == pytest.approx(
        result["engine_seconds"])
    assert {"open (corpus, windows, entities, resume)", "settle (near-duplicates, refusals, absence checks)",
            "commit (run-folder writes)"} <= set(stages)
    charged = [seconds for stage, seconds in stages.items() if not stage.startswith("tokenisation")]
    assert sum(charged) == pytest.approx(result["seconds"])
    assert min(charged) >= 0, stages
    assert result["pairs"] > 0 and result["calls"] >= 2
