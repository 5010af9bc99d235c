"""Which questions each training step sees: seeded permutations of a worker's shard, optionally grouped by
length (``student_iteration.batch_indices``, ``student_loss.encoded_length``)."""

from __future__ import annotations

import pytest
import torch

from qcrd_ray.methods import encoded_length
from qcrd_ray.records import TrainItem
from qcrd_ray.student_iteration import GROUP_BATCHES, batch_indices, iteration_seed


def test_batches_are_deterministic_permutations_of_the_shard():
    def draw(seed):
        return batch_indices(5, 2, 6, torch.Generator().manual_seed(seed))

    assert draw(iteration_seed(0, 1, 0)) == draw(iteration_seed(0, 1, 0))
    assert draw(iteration_seed(0, 1, 0)) != draw(iteration_seed(0, 2, 0))
    flat = [i for batch in draw(7) for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5)) and len(flat) == 12
    assert len({iteration_seed(0, 0, r) for r in range(4)}) == 4
    with pytest.raises(ValueError, match="shard is empty"):
        batch_indices(0, 2, 1, torch.Generator())


def test_batches_grouped_by_length_pad_less_and_keep_every_pass_whole():
    lengths = [(7 * i) % 50 for i in range(200)]  # 200 items, lengths 0-49
    grouped = batch_indices(200, 4, 100, torch.Generator().manual_seed(3), lengths)
    plain = batch_indices(200, 4, 100, torch.Generator().manual_seed(3))

    def padding(batches):  # padded positions beyond each batch's longest item
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < padding(plain) / 3
    flat = [i for batch in grouped for i in batch]
    assert sorted(flat[:200]) == sorted(flat[200:]) == list(range(200))  # each pass is a permutation
    group = GROUP_BATCHES * 4
    assert [lengths[i] for i in flat[:group]] == sorted((lengths[i] for i in flat[:group]), reverse=True)
    with pytest.raises(ValueError, match="3 lengths for 200 items"):
        batch_indices(200, 4, 1, torch.Generator(), [1, 2, 3])


def test_encoded_length_is_the_input_and_the_longest_target_the_method_trains_on():
    item = TrainItem("q", "abcd", "1 + 2", ("xy", "longest"), (1.0, 1.0), ("much longer",), (1.0,))
    assert [encoded_length(item, m) for m in ("finetune", "dss", "qcrd")] == [4 + 5, 4 + 2, 4 + 11]
