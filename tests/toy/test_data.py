import gzip

import pytest
import torch

from vla_razor.toy.data import (
    DatasetMissing,
    _read_idx,
    load_fashion,
    parity_correct,
    random_parity_labels,
)


def test_parity_correct_marks_same_parity_labels():
    correct = parity_correct(torch.tensor([0, 3]))
    assert correct[0].tolist() == [True, False] * 5
    assert correct[1].tolist() == [False, True] * 5


def test_random_parity_labels_are_correct_and_cover_all_five():
    digits = torch.arange(10).repeat(200)
    labels = random_parity_labels(digits, torch.Generator().manual_seed(0))
    assert torch.equal(labels % 2, digits % 2)
    assert set(labels[digits == 4].tolist()) == {0, 2, 4, 6, 8}


def test_splits_are_disjoint_and_sized(tiny_data):
    assert len(tiny_data.parity_pretrain) == 200 and len(tiny_data.parity_test) == 300
    assert len(tiny_data.parity_finetune) == 5000 - 500
    assert tiny_data.parity_test.inputs.shape[1] == 785
    assert torch.all(tiny_data.parity_test.inputs[:, -1] == 1.0)
    assert torch.all(tiny_data.fashion_test.inputs[:, -1] == -1.0)
    assert 0.0 <= tiny_data.parity_test.inputs[:, :-1].min() and tiny_data.parity_test.inputs[:, :-1].max() <= 1.0
    # No test image is also a fine-tuning image.
    test_rows = {tuple(r[:50].tolist()) + (r.sum().item(),) for r in tiny_data.parity_test.inputs}
    assert not any(
        tuple(r[:50].tolist()) + (r.sum().item(),) in test_rows for r in tiny_data.parity_finetune.inputs[:500]
    )


def test_missing_fashion_names_the_debian_package(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        load_fashion(tmp_path)


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "x-images-idx3-ubyte.gz"
    header = (0x0803).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(100))
    with pytest.raises(ValueError, match="truncated idx file"):
        _read_idx(path)
