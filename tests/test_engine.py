from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
import torch
import torch.multiprocessing as mp
from ddp import free_port, set_rank_env
from torch import nn

from vidseg.config import ExperimentConfig, OptimConfig, apply_overrides
from vidseg.errors import CheckpointError
from vidseg.io.checkpoint import load_checkpoint, save_checkpoint
from vidseg.training.checkpoint import latest_checkpoint
from vidseg.training.engine import EngineOptions, ResumableBatchSampler, StepOutput, Trainer, TrainingError
from vidseg.training.optim import build_optimizer, lr_factor, scale_for_batch


class Regression(torch.utils.data.Dataset):
    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 5, generator=g)
        self.y = self.x @ torch.arange(5.0) + 0.1 * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def collate(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(5, 8)
        self.drop = nn.Dropout(0.3)  # exercises RNG state restore on resume
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.backbone(x)))).squeeze(-1)


def mse(model, batch, iteration=0):
    x, y = batch
    loss = ((model(x) - y) ** 2).mean()
    return StepOutput(loss, {"mse": loss.item()})


def _config(**optim):
    base = dict(lr=0.01, batch_size=4, max_iters=6, grad_clip=0.0, warmup_iters=2, steps=(4,))
    base.update(optim)
    cfg = apply_overrides(ExperimentConfig(), ["data.num_workers=0"])
    return dataclasses.replace(cfg, optim=dataclasses.replace(OptimConfig(), **base))


def _trainer(tmp, cfg=None, loss_fn=mse, **opts):
    opts = {"checkpoint_every": 2, "progress": False, **opts}
    options = EngineOptions(out_dir=tmp, stage="segmenter", **opts)
    return Trainer(Net(), Regression(), collate, loss_fn, cfg or _config(), options)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_training_reduces_loss_and_writes_logs(tmp_path):
    t = _trainer(tmp_path, _config(max_iters=60, lr=0.05, steps=()), log_every=1)
    summary = t.fit()
    assert summary.iteration == 60 and not summary.interrupted
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum(r["loss"] for r in records[-5:]) < sum(r["loss"] for r in records[:5]) / 3
    assert load_checkpoint(summary.last_checkpoint).iteration == 60


def test_resume_continues_exactly(tmp_path):
    full = _trainer(tmp_path / "a")
    full.fit()
    first = _trainer(tmp_path / "b")
    first.fit(max_iters=3)
    resumed = _trainer(tmp_path / "b")
    resumed.fit(resume=True)
    assert resumed.iteration == 6
    for p, q in zip(_params(full.model), _params(resumed.model)):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_loss_is_told_the_iteration_also_after_resume(tmp_path):
    seen = []

    def loss(model, batch, iteration):
        seen.append(iteration)
        return mse(model, batch)

    _trainer(tmp_path, loss_fn=loss).fit(max_iters=3)
    _trainer(tmp_path, _config(grad_accumulation=2), loss_fn=loss).fit(resume=True)
    assert seen == [0, 1, 2, 3, 3, 4, 4, 5, 5]  # every micro-batch of an update gets its index


def test_sigterm_leaves_loadable_checkpoint(tmp_path):
    calls = []

    def loss_then_signal(model, batch, iteration):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return mse(model, batch)

    t = _trainer(tmp_path, loss_fn=loss_then_signal)
    summary = t.fit()
    assert summary.interrupted and summary.iteration == 3
    assert load_checkpoint(latest_checkpoint(tmp_path), with_trainer_state=True).iteration == 3
    assert signal.getsignal(signal.SIGTERM) is not t._on_signal


def test_nonfinite_loss_skips_then_stops_keeping_good_weights(tmp_path):
    def nan_loss(model, batch, iteration):
        out = mse(model, batch)
        return StepOutput(out.loss * float("nan"))

    t = _trainer(tmp_path, loss_fn=nan_loss, max_nonfinite=3)
    before = _params(t.model)
    with pytest.raises(TrainingError, match="non-finite for 3 iterations"):
        t.fit()
    ckpt = load_checkpoint(latest_checkpoint(tmp_path))
    for p, (name, q) in zip(before, t.model.named_parameters()):
        torch.testing.assert_close(ckpt.state_dict[name], p)
        torch.testing.assert_close(q.detach(), p)


def test_corrupted_checkpoint_is_clear_error_and_previous_kept(tmp_path):
    t = _trainer(tmp_path)
    t.fit(max_iters=4)
    newest = latest_checkpoint(tmp_path)
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10:] = b"x" * 10
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*manifest"):
        load_checkpoint(newest)
    previous = tmp_path / "ckpt_0000002"
    assert load_checkpoint(previous).iteration == 2


def test_pickle_with_code_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c", Net().state_dict(), ExperimentConfig(), "segmenter", 1, {})
    torch.save({"evil": Regression}, path / "trainer_state.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    from vidseg.io.checkpoint import _sha256

    manifest["sha256"]["trainer_state.pt"] = _sha256(path / "trainer_state.pt")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path, with_trainer_state=True)


def test_wrong_stage_is_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "c", Net().state_dict(), ExperimentConfig(), "segmenter", 1)
    with pytest.raises(CheckpointError, match="stage 'segmenter', expected 'refiner'"):
        load_checkpoint(path, expected_stage="refiner")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_sampler_ranks_partition_global_batch():
    single = iter(ResumableBatchSampler(10, 4, 0, 1, 1, seed=3, start_iteration=0))
    r0 = iter(ResumableBatchSampler(10, 4, 0, 2, 1, seed=3, start_iteration=0))
    r1 = iter(ResumableBatchSampler(10, 4, 1, 2, 1, seed=3, start_iteration=0))
    for _ in range(5):
        assert next(single) == next(r0) + next(r1)
    late = iter(ResumableBatchSampler(10, 4, 0, 1, 2, seed=3, start_iteration=2))
    ref = iter(ResumableBatchSampler(10, 4, 0, 1, 1, seed=3, start_iteration=0))
    next(ref), next(ref)
    assert next(late) + next(late) == next(ref)


def test_lr_schedules_and_linear_scaling():
    cfg = OptimConfig(lr=1.0, warmup_iters=10, steps=(20, 30), gamma=0.1, max_iters=40)
    assert lr_factor(0, cfg) == pytest.approx(0.001)
    assert lr_factor(10, cfg) == 1.0 and lr_factor(25, cfg) == pytest.approx(0.1)
    assert lr_factor(35, cfg) == pytest.approx(0.01)
    poly = dataclasses.replace(cfg, schedule="poly", warmup_iters=0)
    assert lr_factor(20, poly) == pytest.approx(0.5**0.9)
    scaled = scale_for_batch(OptimConfig(lr=1e-4, batch_size=8, max_iters=160000, steps=(112000,)), 1)
    assert scaled.lr == pytest.approx(1.25e-5) and scaled.max_iters == 1280000 and scaled.steps == (896000,)


def test_backbone_lr_multiplier_and_no_decay_groups():
    opt = build_optimizer(Net(), OptimConfig(lr=1.0, backbone_lr_multiplier=0.1, weight_decay=0.05))
    groups = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in opt.param_groups}
    assert groups == {(0.1, 0.05): 1, (0.1, 0.0): 1, (1.0, 0.05): 1, (1.0, 0.0): 1}



def _ddp_worker(rank, world, port, out_dir, result_path):
    set_rank_env(rank, world, port)
    t = _trainer(out_dir, _config(max_iters=3, lr=0.05), checkpoint_every=100)
    t.model.drop.p = 0.0  # dropout draws differ per process; the comparison is about the update itself
    t.fit()
    if rank == 0:
        torch.save(_params(t.model), result_path)
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    single = _trainer(tmp_path / "single", _config(max_iters=3, lr=0.05), checkpoint_every=100)
    single.model.drop.p = 0.0
    single.fit()
    result = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, free_port(), tmp_path / "ddp", result), nprocs=2, join=True)
    for p, q in zip(_params(single.model), torch.load(result)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_sampler_with_epoch_keys_carry_the_epoch_of_each_position():
    plain = iter(ResumableBatchSampler(4, 2, 0, 1, 1, seed=0, start_iteration=0))
    keyed = iter(ResumableBatchSampler(4, 2, 0, 1, 1, seed=0, start_iteration=0, with_epoch=True))
    for iteration in range(6):
        batch, keys = next(plain), next(keyed)
        assert [k[0] for k in keys] == batch and {k[1] for k in keys} == {iteration // 2}
    resumed = iter(ResumableBatchSampler(4, 2, 0, 1, 1, seed=0, start_iteration=4, with_epoch=True))
    assert {k[1] for k in next(resumed)} == {2}


class EpochDraws(torch.utils.data.Dataset):
    """Returns the epoch its sample key carries: a dataset that draws new data every epoch."""

    def __len__(self):
        return 2

    def set_epoch(self, epoch):
        raise AssertionError("the engine passes the epoch in the key, it never calls set_epoch")

    def __getitem__(self, key):
        index, epoch = key
        return torch.tensor([float(index)]), torch.tensor(float(epoch))


def test_trainer_hands_epoch_keys_to_epoch_aware_datasets_in_worker_processes(tmp_path):
    seen = []

    def record(model, batch, iteration):
        x, epoch = batch
        seen.append(epoch.tolist())
        return StepOutput(model.weight.sum())

    cfg = dataclasses.replace(_config(batch_size=2, max_iters=3), data=dataclasses.replace(
        ExperimentConfig().data, num_workers=1))
    trainer = Trainer(nn.Linear(1, 1, bias=False), EpochDraws(), collate, record, cfg,
                      EngineOptions(out_dir=tmp_path, stage="segmenter", progress=False, checkpoint_every=100))
    trainer.fit()
    assert seen == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
