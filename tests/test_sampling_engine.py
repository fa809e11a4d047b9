"""Data order, keyed augmentation, schedule and AMP selection: the pieces that make training
deterministic across restarts and process counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roadseg.models.unet import UNet
from roadseg.train.distributed import World
from roadseg.train.engine import NonFiniteLossError, StepContext, make_scheduler, train_one_epoch
from roadseg.train.fit import amp_dtype_for
from roadseg.train.paired_transforms import to_tv_tensors, train_transform
from roadseg.train.sampling import EpochBatchSampler, KeyedAugmentation


def batches(sampler, batch_size):
    keys = list(sampler)
    return [keys[i: i + batch_size] for i in range(0, len(keys), batch_size)]


def test_rank_batches_union_to_the_single_process_global_batch():
    single = EpochBatchSampler(23, batch_size=6, num_replicas=1, rank=0, seed=5)
    ranks = [EpochBatchSampler(23, batch_size=3, num_replicas=2, rank=r, seed=5) for r in range(2)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        global_batches = batches(single, 6)
        per_rank = [batches(s, 3) for s in ranks]
        assert len(global_batches) == 3 == len(per_rank[0]) == len(per_rank[1])  # 23 // 6, drop_last
        for k, batch in enumerate(global_batches):
            assert sorted(batch) == sorted(per_rank[0][k] + per_rank[1][k])
    single.set_epoch(0)
    first = list(single)
    single.set_epoch(1)
    assert list(single) != first  # a new order every epoch


def test_sampler_can_start_and_stop_mid_epoch():
    sampler = EpochBatchSampler(20, batch_size=2, seed=1)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start_iter=4, stop_iter=7)
    assert list(sampler) == full[8:14] and len(sampler) == 6


class _Identity:
    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.items = [to_tv_tensors(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                                    rng.integers(0, 2, (48, 64), dtype=np.uint8)) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_augmentation_depends_only_on_seed_epoch_and_index():
    dataset = KeyedAugmentation(_Identity(3), train_transform((32, 48)), seed=7)
    first = dataset[(2, 1)]
    torch.manual_seed(123)  # global RNG state and the other items loaded before must not matter
    _ = dataset[(0, 0)], dataset[(5, 2)]
    again = dataset[(2, 1)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], dataset[(3, 1)][0])  # another epoch, another augmentation


def test_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    for kind in ("poly", "cosine"):
        scheduler = make_scheduler(optimizer, total_iters=100, warmup_iters=10, schedule=kind)
        lrs = []
        for _ in range(100):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert lrs[0] < lrs[5] < lrs[10] and max(lrs) <= 1.0
        assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
        assert lrs[-1] < 0.05
        optimizer.param_groups[0]["lr"] = 1.0
        optimizer.param_groups[0]["initial_lr"] = 1.0


def test_non_finite_extra_loss_term_stops_training_before_the_step():
    model = UNet.from_base_width(4, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, masks = torch.randn(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def nan_distillation(model, images, masks):
        from roadseg.train.losses import cross_entropy_sum

        return cross_entropy_sum(model(images), masks), (masks != 255).sum(), torch.tensor(float("nan"))

    ctx = StepContext(torch.device("cpu"), World(), progress=False)
    with pytest.raises(NonFiniteLossError, match="iteration 7"):
        train_one_epoch(model, [(images, masks)], optimizer, make_scheduler(optimizer, 10, 0),
                        torch.amp.GradScaler("cpu", enabled=False), ctx, epoch=0, first_step=7,
                        loss_fn=nan_distillation)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


def test_amp_is_off_on_cpu_and_chosen_on_cuda():
    assert amp_dtype_for(torch.device("cpu"), "auto") is None
    assert amp_dtype_for(torch.device("cpu"), "fp16") is None
    assert amp_dtype_for(torch.device("cuda"), "off") is None
    assert amp_dtype_for(torch.device("cuda"), "fp16") == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (AMP + channels_last path)")
def test_cuda_amp_training_step_reduces_loss():
    device = torch.device("cuda")
    model = UNet.from_base_width(8, depth=3).to(device).to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 64, 96, device=device)
    masks = (images[:, 0] > 0).long()
    loader = [(images, masks)] * 20
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = make_scheduler(optimizer, 20, 0)
    dtype = amp_dtype_for(device, "auto")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    ctx = StepContext(device, World(), dtype, channels_last=True, progress=False)
    first = train_one_epoch(model, loader[:1], optimizer, scheduler, scaler, ctx, epoch=0, first_step=0)
    last = train_one_epoch(model, loader, optimizer, scheduler, scaler, ctx, epoch=1, first_step=1)
    assert last["loss"] < first["loss"]
