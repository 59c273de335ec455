"""EpochSampler: torch's DistributedSampler order, batch by batch, resumable across world sizes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from zeroforge.data.sampler import EpochSampler
from zeroforge.errors import ConfigError, DataError


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("n", "world"), [(1, 1), (10, 1), (10, 2), (11, 2), (17, 4), (3, 5), (100, 3)])
def test_epoch_order_is_torchs_distributed_sampler(n: int, world: int, shuffle: bool, drop_last: bool):
    if drop_last and n < world:
        pytest.skip("no whole round to deal (a DataError, tested below)")
    for rank in range(world):
        ours = EpochSampler(n, rank=rank, world_size=world, seed=7, shuffle=shuffle, drop_last=drop_last)
        theirs = DistributedSampler(range(n), world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
        assert ours.num_samples == theirs.num_samples
        for epoch in range(3):
            theirs.set_epoch(epoch)
            assert ours.epoch_indices(epoch).tolist() == list(theirs), (rank, epoch)


def test_ranks_share_out_every_sample_once_per_epoch_and_reshuffle():
    world, n = 4, 20
    samplers = [EpochSampler(n, rank=r, world_size=world, seed=1) for r in range(world)]
    for epoch in range(2):
        together = torch.cat([s.epoch_indices(epoch) for s in samplers]).tolist()
        assert sorted(together) == list(range(n))
    assert samplers[0].epoch_indices(0).tolist() != samplers[0].epoch_indices(1).tolist()


def test_batches_walk_the_epoch_then_the_next():
    s = EpochSampler(10, seed=0)
    batches = [s.next_indices(4).tolist() for _ in range(4)]
    assert [len(b) for b in batches] == [4, 4, 2, 4]  # the epoch's last batch is smaller
    assert sum(batches[:3], []) == s.epoch_indices(0).tolist()
    assert batches[3] == s.epoch_indices(1)[:4].tolist()
    assert s.epoch == 1 and s.steps_per_epoch(4) == 3


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    world=st.integers(1, 4),
    batch=st.integers(1, 7),
    steps=st.integers(1, 25),
    seed=st.integers(0, 10),
)
def test_w_ranks_at_b_read_what_one_process_reads_at_w_times_b(
    n: int, world: int, batch: int, steps: int, seed: int
):
    n -= n % world  # no padding: then the union of the ranks' batches is exactly the big batch
    if n == 0:
        return
    ranks = [EpochSampler(n, rank=r, world_size=world, seed=seed) for r in range(world)]
    one = EpochSampler(n, seed=seed)
    for _ in range(steps):
        together = sorted(i for s in ranks for i in s.next_indices(batch).tolist())
        assert together == sorted(one.next_indices(batch * world).tolist())


@pytest.mark.parametrize(("saved_world", "resumed_world"), [(2, 2), (2, 1), (1, 2), (4, 2)])
def test_resume_continues_at_the_same_samples_under_any_world_size(saved_world: int, resumed_world: int):
    n, global_batch, seed = 48, 8, 5
    reference = EpochSampler(n, seed=seed)
    expected = [sorted(reference.next_indices(global_batch).tolist()) for _ in range(14)]

    saved = [EpochSampler(n, rank=r, world_size=saved_world, seed=seed) for r in range(saved_world)]
    for _ in range(9):  # into the second epoch (6 steps per epoch)
        for s in saved:
            s.next_indices(global_batch // saved_world)
    state = saved[0].state_dict()
    assert state == saved[-1].state_dict()  # the state names no rank: any rank's will do

    resumed = [EpochSampler(n, rank=r, world_size=resumed_world, seed=0) for r in range(resumed_world)]
    for s in resumed:
        s.load_state_dict(state)  # the seed comes from the state
    for step in range(9, 14):
        b = global_batch // resumed_world
        assert sorted(i for s in resumed for i in s.next_indices(b).tolist()) == expected[step]


def test_bad_arguments_and_mismatched_state():
    with pytest.raises(DataError, match="empty"):
        EpochSampler(0)
    with pytest.raises(ConfigError, match="rank 2"):
        EpochSampler(10, rank=2, world_size=2)
    with pytest.raises(DataError, match="3 samples cannot be dealt to 5 ranks"):
        EpochSampler(3, world_size=5, drop_last=True)
    with pytest.raises(ConfigError, match="batch_size"):
        EpochSampler(3).next_indices(0)
    with pytest.raises(DataError, match="over 10 samples, this dataset has 11"):
        EpochSampler(11).load_state_dict(EpochSampler(10).state_dict())
