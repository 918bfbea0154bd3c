"""Final-network training: schedules, label smoothing, auxiliary loss, top-k, TrainTask steps, presets, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from cli_helpers import expect_error

from gdas.engine import distributed as dist
from gdas.cli.main import main
from gdas.configs import base
from gdas.configs.train import TRAIN_PRESETS, TrainConfig
from gdas.errors import GdasError
from gdas.genotypes import REGISTRY
from gdas.engine.rundir import RunDir
from gdas.data.images import load_image_dataset
from gdas.spaces.darts.space import check_channels
from gdas.train import (TEST_KEYS, VALID_KEYS, TrainTask, batch_source, drop_path_at, lr_at, smoothed_cross_entropy,
                        topk_correct, training_loss)

FAST = ["--preset", "smoke", "--no-progress", "--no-report", "--device", "cpu", "--batch", "8",
        "--synthetic-train", "16", "--synthetic-test", "8"]


def test_cosine_schedule_at_chosen_epochs():
    cfg = TrainConfig(lr=0.025, lr_min=0.0, epochs=600)
    assert lr_at(0, cfg) == pytest.approx(0.025)
    assert lr_at(300, cfg) == pytest.approx(0.0125)
    assert lr_at(150, cfg) == pytest.approx(0.025 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(600, cfg) == pytest.approx(0.0, abs=1e-12)
    floor = TrainConfig(lr=0.1, lr_min=0.02, epochs=10)
    assert lr_at(5, floor) == pytest.approx(0.06)


def test_exponential_schedule_decays_by_gamma_each_epoch():
    cfg = TRAIN_PRESETS["imagenet"]
    assert (cfg.schedule, cfg.lr, cfg.lr_gamma) == ("exp", 0.1, 0.97)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(1, cfg) == pytest.approx(0.097)
    assert lr_at(100, cfg) == pytest.approx(0.1 * 0.97 ** 100)
    assert lr_at(11, cfg) / lr_at(10, cfg) == pytest.approx(0.97)


def test_drop_path_ramp():
    assert drop_path_at(0, 600, 0.2) == 0.0
    assert drop_path_at(300, 600, 0.2) == pytest.approx(0.1)
    assert drop_path_at(599, 600, 0.2) == pytest.approx(0.2 * 599 / 600)
    assert drop_path_at(5, 10, 0.0) == 0.0


def test_label_smoothing_matches_a_hand_computation():
    rows = [[2.0, 1.0, 0.1], [0.5, 0.2, 3.0]]
    targets = [0, 2]
    eps, k = 0.1, 3
    expected = 0.0
    for logits, target in zip(rows, targets):
        log_z = math.log(sum(math.exp(v) for v in logits))
        log_p = [v - log_z for v in logits]
        q = [(1 - eps) * (i == target) + eps / k for i in range(k)]
        expected += -sum(qi * lp for qi, lp in zip(q, log_p))
    expected /= len(rows)
    got = smoothed_cross_entropy(torch.tensor(rows), torch.tensor(targets), eps)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    plain = -sum(v[t] - math.log(sum(math.exp(x) for x in v)) for v, t in zip(rows, targets)) / 2
    assert smoothed_cross_entropy(torch.tensor(rows), torch.tensor(targets)).item() == pytest.approx(plain, rel=1e-6)


def test_training_loss_adds_the_weighted_auxiliary_loss():
    g = torch.Generator().manual_seed(0)
    logits, aux, y = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.tensor([0, 1, 2, 3])
    total, main_loss = training_loss(logits, aux, y, 0.1, 0.4)
    ce = smoothed_cross_entropy
    assert main_loss.item() == pytest.approx(ce(logits, y, 0.1).item())
    assert total.item() == pytest.approx((ce(logits, y, 0.1) + 0.4 * ce(aux, y, 0.1)).item())
    assert training_loss(logits, None, y, 0.1, 0.4)[0].item() == pytest.approx(main_loss.item())


def test_topk_correct_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.5],   # target 1: top-1
                           [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],   # target 5: rank 5 -> top-5 only
                           [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0]])  # target 6: rank 7 -> neither
    assert topk_correct(logits, torch.tensor([1, 5, 6])).tolist() == [1, 2]
    two = torch.tensor([[0.2, 0.8], [0.9, 0.1]])  # fewer classes than k: top-5 counts everything
    assert topk_correct(two, torch.tensor([0, 1])).tolist() == [0, 2]


def test_every_preset_validates_and_follows_the_paper():
    for name in TRAIN_PRESETS:
        base.resolve(TRAIN_PRESETS, name, {"data_dir": "x"} if "imagenet" in name else {}).validate()
    c10 = TRAIN_PRESETS["cifar10"]
    assert (c10.C, c10.N, c10.epochs, c10.batch_size, c10.lr, c10.lr_min, c10.schedule) == \
           (36, 6, 600, 96, 0.025, 0.0, "cosine")
    assert (c10.momentum, c10.weight_decay, c10.grad_clip, c10.cutout, c10.drop_path_prob) == (0.9, 3e-4, 5.0, 16, 0.2)
    assert c10.auxiliary and c10.auxiliary_weight == 0.4 and c10.label_smoothing == 0.0
    inet = TRAIN_PRESETS["imagenet"]
    assert (inet.C, inet.N, inet.epochs, inet.batch_size, inet.nesterov, inet.weight_decay) == \
           (50, 4, 250, 128, True, 3e-5)
    assert (inet.label_smoothing, inet.auxiliary_weight, inet.grad_clip, inet.imagenet_size) == (0.1, 0.4, 5.0, 224)
    assert TRAIN_PRESETS["imagenet-frc"].C == 52 and TRAIN_PRESETS["imagenet-frc"].genotype == "GDAS_FRC"


@pytest.mark.parametrize("changes, needle", [
    ({"dataset": "imagenet"}, "--data-dir"),
    ({"dataset": "imagenet", "data_dir": "x", "image_size": 64}, "--no-auxiliary"),
    ({"schedule": "step"}, "--schedule"),
    ({"label_smoothing": 1.0}, "--label-smoothing"),
    ({"drop_path_prob": 1.0}, "--drop-path-prob"),
    ({"C": 7}, "even"),
    ({"lr_min": 1.0}, "--lr-min"),
    ({"valid_portion": 0.0}, "--valid-portion must be in"),
    ({"valid_portion": 1.0}, "--valid-portion must be in"),
    ({"valid_portion": float("nan")}, "--valid-portion must be in"),
    ({"dataset": "imagenet", "data_dir": "x", "valid_portion": 0.1}, "ImageNet folders are not supported"),
])
def test_bad_configs_are_one_line_errors(changes, needle):
    with pytest.raises(GdasError, match=needle):
        dataclasses.replace(TrainConfig(), **changes).validate()


def test_fixed_reduction_cell_needs_c_divisible_by_4():
    check_channels(REGISTRY["GDAS_FRC"], 36)  # 2C = 72 splits into 8 groups
    check_channels(REGISTRY["GDAS"], 18)  # searched reduction cell: no constraint
    with pytest.raises(GdasError, match="divisible by 8"):
        check_channels(REGISTRY["GDAS_FRC"], 18)


def _task(**changes) -> TrainTask:
    cfg = dataclasses.replace(TRAIN_PRESETS["smoke"], device="cpu", batch_size=8, synthetic_train=16,
                              synthetic_test=8, **changes)
    device = torch.device("cpu")
    return TrainTask(cfg, REGISTRY["GDAS"], batch_source(cfg, device, dist.context()), device, show_progress=False)


def test_train_task_epoch_updates_weights_and_reports_metrics():
    task = _task(epochs=4)
    before = [p.detach().clone() for p in task.params]
    metrics = task.run_epoch(2)
    assert task.model.drop_path_prob == pytest.approx(0.2 * 2 / 4)
    assert task.opt.param_groups[0]["lr"] == pytest.approx(lr_at(2, task.cfg))
    assert set(metrics) >= {"train_loss", "train_acc", "test_loss", "top1_err", "top5_err", "lr", "drop_path_prob",
                            "images_per_s"}
    assert 0 <= metrics["top5_err"] <= metrics["top1_err"] <= 1 and metrics["train_loss"] > 0
    changed = sum(not torch.equal(a, b) for a, b in zip(before, task.params))
    assert changed > len(before) // 2
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.auxiliary_head.parameters()))
    assert not task.model.training  # evaluation ran last, in eval mode


def test_auxiliary_head_runs_only_in_training():
    task = _task()
    x = torch.randn(2, 3, 32, 32)
    task.model.train()
    assert task.model(x)[1] is not None
    task.model.eval()
    assert isinstance(task.model(x), torch.Tensor)  # eval mode: the logits alone


@pytest.mark.parametrize("valid_portion", [None, 0.25])
def test_eval_every_skips_evaluation_but_not_the_last_epoch(valid_portion):
    task = _task(epochs=3, eval_every=2, valid_portion=valid_portion)
    keys = (VALID_KEYS if valid_portion else ()) + TEST_KEYS
    skipped = task.run_epoch(0)
    assert {k: skipped[k] for k in keys} == dict.fromkeys(keys)
    assert valid_portion or not any(k.startswith("valid") for k in skipped)  # no validation part: no such metric
    for epoch in (1, 2):  # epoch 1 as (1 + 1) % 2 == 0, epoch 2 as the last
        metrics = task.run_epoch(epoch)
        again = task.evaluate()  # the weights the epoch ended with: the figures it reported
        if valid_portion:
            again |= task.evaluate(valid=True)
        assert set(again) == set(keys) and {k: metrics[k] for k in keys} == again
        assert 0 <= metrics["top5_err"] <= metrics["top1_err"] <= 1 and metrics["test_loss"] > 0


def test_valid_portion_holds_out_a_seeded_part_of_the_training_images():
    task = _task(valid_portion=0.25)
    full = load_image_dataset("synthetic", synthetic_train=16, synthetic_test=8, seed=task.cfg.seed)
    train, valid = task.data.split
    assert len(valid) == 4 and sorted(torch.cat([train, valid]).tolist()) == list(range(16))
    assert torch.equal(task.data.train_x, full.train_x[train]) and torch.equal(task.data.valid_y, full.train_y[valid])
    assert torch.equal(task.data.test_x, full.test_x)
    steps, batches = task.data.train_batches(0, None)
    assert steps == 12 // 8 and all(len(y) == 8 for _, y in batches)  # drawn from the 12 training-part images
    assert torch.equal(_task(valid_portion=0.25).data.split[1], valid)  # the same seed, the same part
    assert not torch.equal(_task(valid_portion=0.25, seed=1).data.split[1], valid)
    assert _task().data.split is None and len(_task().data.train_y) == 16
    with pytest.raises(GdasError, match="--valid-portion 0.01"):  # round(16 x 0.01) = 0 validation images
        _task(valid_portion=0.01)
    # A resumed run passes the split it stored; one that does not fit the data is refused.
    cfg, cpu, ctx = task.cfg, torch.device("cpu"), dist.context()
    stored = (torch.arange(4, 16), torch.arange(4))
    assert batch_source(cfg, cpu, ctx, stored).split is stored
    with pytest.raises(GdasError, match="data changed"):
        batch_source(cfg, cpu, ctx, (torch.arange(4, 20), torch.arange(4)))


def test_best_is_picked_on_validation_never_on_test(tmp_path: Path):
    task, run = _task(valid_portion=0.25), RunDir(tmp_path / "valid")
    for epoch, (valid, test) in enumerate([(0.5, 0.9), (0.3, 0.95), (0.3, 0.1), (0.4, 0.0)]):
        task.after_epoch(epoch, {"valid_top1_err": valid, "valid_top5_err": valid / 2, "top1_err": test,
                                 "top5_err": test / 2}, run)
    task.after_epoch(4, dict.fromkeys(VALID_KEYS + TEST_KEYS), run)  # an epoch without evaluation
    expected = {"epoch": 1, "valid_top1_err": 0.3, "valid_top5_err": 0.15, "test_top1_err": 0.95,
                "test_top5_err": 0.475}  # the earliest lowest validation error, whatever the test error
    assert task.best == expected
    assert {k: v for k, v in run.load_checkpoint("best.pt").items() if k != "task"} == expected
    plain, plain_run = _task(), RunDir(tmp_path / "plain")
    plain.after_epoch(0, {"test_loss": 0.1, "top1_err": 0.0, "top5_err": 0.0}, plain_run)
    assert plain.best == {"epoch": -1} and not plain_run.file("best.pt").exists()


def test_checkpoint_of_another_genotype_is_refused():
    task = _task()
    state = task.state_dict()
    other = _task()
    other.genotype = REGISTRY["DARTS_V2"]
    with pytest.raises(GdasError, match="another genotype"):
        other.load_state_dict(state)


@pytest.mark.parametrize("valid", [[], ["--valid-portion", "0.25"]], ids=["no-valid", "valid"])
def test_killed_training_resumes_to_the_same_weights(tmp_path: Path, monkeypatch, capsys, valid):
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = (*FAST, "--epochs", "3", *valid)
    assert main(["train", *args, "--out", str(full)]) == 0

    saves = {"n": 0}
    original = RunDir.save_checkpoint

    def save_then_die(self, state, name="checkpoint.pt"):
        original(self, state, name)
        if name == "checkpoint.pt":
            saves["n"] += 1
            if saves["n"] == 2:  # killed right after the second epoch's checkpoint
                raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    assert main(["train", *args, "--out", str(killed)]) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert not (killed / "summary.json").exists()
    with open(killed / "metrics.jsonl", "a") as handle:  # a half-finished epoch's line must not survive
        handle.write(json.dumps({"epoch": 2, "train_loss": 99.0}) + "\n")
    if valid:  # the resumed run reads the split it drew: a damaged split.json stops it
        split = (killed / "split.json").read_text()
        (killed / "split.json").write_text("{}")
        capsys.readouterr()
        expect_error(capsys, "train", "--resume", killed, "--no-progress", "--no-report", contains="split.json")
        (killed / "split.json").write_text(split)
    assert main(["train", "--resume", str(killed), "--no-progress", "--no-report"]) == 0

    a, b = RunDir(full).load_checkpoint()["task"], RunDir(killed).load_checkpoint()["task"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    metrics = [RunDir(out).read_jsonl("metrics.jsonl") for out in (full, killed)]
    assert [m["epoch"] for m in metrics[1]] == [0, 1, 2]
    timeless = [[{k: v for k, v in m.items() if "time" not in k and k != "images_per_s"} for m in run]
                for run in metrics]
    assert timeless[0] == timeless[1] and ("valid_top1_err" in timeless[0][0]) == bool(valid)
    summaries = [{k: v for k, v in RunDir(out).read_json("summary.json").items() if k != "wall_time_s"}
                 for out in (full, killed)]
    assert summaries[0] == summaries[1]
    if not valid:  # nothing to pick the best on: the result is the last weights
        assert not (full / "best.pt").exists() and not (killed / "best.pt").exists()
        return
    assert (full / "split.json").read_text() == (killed / "split.json").read_text()
    best = [RunDir(out).load_checkpoint("best.pt") for out in (full, killed)]
    assert best[0]["epoch"] == best[1]["epoch"] == summaries[0]["best_epoch"]
    assert all(torch.equal(best[0]["task"]["model"][k], best[1]["task"]["model"][k]) for k in a["model"])
