import json

import torch

from selfinstruct.cli import main
from selfinstruct.diversity import k_center, question_embeddings
from selfinstruct.models import load_model, load_tokenizer
from selfinstruct.tune import select_random

from .test_tune import records, write_run


def test_every_fact_is_kept_before_a_second_phrasing():
    torch.manual_seed(0)
    groups = [f"fact{i // 3}" for i in range(15)]  # 5 facts asked 3 ways
    points = torch.randn(15, 8)
    five = k_center(points, groups, 5, seed=1)
    assert sorted(groups[i] for i in five) == [f"fact{i}" for i in range(5)]
    eight = k_center(points, groups, 8, seed=1)
    assert len(set(eight)) == 8 and {groups[i] for i in eight} == set(groups) and eight[:5] == five
    assert k_center(points, groups, 20, seed=1) == list(range(15))


def test_selection_is_deterministic_by_seed_and_spreads_over_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = torch.cat([c + torch.randn(10, 2) for c in centres])
    groups = [str(i) for i in range(30)]  # every point its own fact: only distance decides
    picked = k_center(points, groups, 3, seed=7)
    assert sorted(i // 10 for i in picked) == [0, 1, 2], "one point from each far cluster"
    assert k_center(points, groups, 6, seed=7) == k_center(points, groups, 6, seed=7)
    assert {tuple(k_center(points, groups, 6, seed=s)) for s in range(5)} != {tuple(picked)}


def test_question_embeddings_ignore_padding(tiny_model):
    model, _ = load_model(tiny_model, "none")
    tokenizer = load_tokenizer(tiny_model)
    short, long = "Who built it?", "Who built the Brinewheel in the bay outside the Long Arm?"
    together = question_embeddings(model, tokenizer, [short, long])
    alone = question_embeddings(model, tokenizer, [short])
    assert together.shape == (2, model.config.hidden_size)
    assert torch.allclose(together[0], alone[0], atol=1e-4)


def test_tune_select_trains_on_the_chosen_pairs(tmp_path, tiny_model, capsys):
    run = write_run(tmp_path, [json.dumps(r) for r in records(16)])
    assert main(["tune", "--run", str(run), "--model", str(tiny_model), "--quantization", "none", "--select", "6",
                 "--epochs", "1", "--batch-size", "2", "--eval-share", "0", "--no-gate"]) == 0
    metrics = json.loads((run / "adapter" / "train_metrics.json").read_text())
    assert metrics["train_pairs"] == 6 and metrics["config"]["select"] == 6
    assert "--select 6: 6 of 16 training pairs by k-center" in capsys.readouterr().err


def test_select_by_random_is_a_seeded_uniform_sample(tmp_path, tiny_model, capsys):
    pairs = records(16)
    drawn = select_random(pairs, 6, seed=3)
    assert len(drawn) == 6 and len({r["id"] for r in drawn}) == 6 and drawn == select_random(pairs, 6, seed=3)
    def ids(seed):
        return tuple(r["id"] for r in select_random(pairs, 6, seed))
    assert len({ids(seed) for seed in range(5)}) > 1, "another seed draws other pairs"
    run = write_run(tmp_path, [json.dumps(r) for r in pairs])
    assert main(["tune", "--run", str(run), "--model", str(tiny_model), "--quantization", "none", "--select", "6",
                 "--select-by", "random", "--epochs", "1", "--batch-size", "2", "--eval-share", "0",
                 "--no-gate"]) == 0
    assert "--select 6: 6 of 16 training pairs at random" in capsys.readouterr().err
    metrics = json.loads((run / "adapter" / "train_metrics.json").read_text())
    assert metrics["train_pairs"] == 6 and metrics["config"]["select_by"] == "random"
