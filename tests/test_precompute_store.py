"""``data.precompute_frontend``: the spectrograms are written once to a file of the cache folder and memory-mapped."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from audiocls.audio.augment import AugmentConfig
from audiocls.audio.frontend import LogMelFrontend
from audiocls.data.precompute import SpecDataset
from tests.conftest import tiny_datamodule


def _stored(root):
    dm = tiny_datamodule(root, AugmentConfig())
    dm.precompute_frontend = True
    return dm


def test_stored_spectrograms_are_a_file_read_back_without_recomputing(tiny_root, tmp_path, monkeypatch):
    cache_root = tmp_path / "cache"  # its own, so no earlier test has stored these spectrograms
    monkeypatch.setenv("AUDIOCLS_CACHE", str(cache_root))
    calls = []
    forward = LogMelFrontend.forward

    def counted(self, wave, *args, **kwargs):
        calls.append(len(wave))
        return forward(self, wave, *args, **kwargs)

    monkeypatch.setattr(LogMelFrontend, "forward", counted)
    first = _stored(tiny_root)
    first.setup("fit")
    computed = sum(calls)
    assert computed == sum(len(ds) for ds in first.splits.values())  # every clip once, through the frontend

    calls.clear()
    second = _stored(tiny_root)  # a later run (or another process) with the same clips and frontend
    second.setup("fit")
    assert calls == []
    for ds in first.splits.values():  # file-backed, not a tensor of the whole split in this process's memory
        assert isinstance(ds, SpecDataset) and isinstance(ds.specs, np.memmap)
        assert ds.specs.filename.parent == cache_root
    for name, ds in second.splits.items():
        assert ds.specs.filename == first.splits[name].specs.filename
        np.testing.assert_array_equal(ds.specs, first.splits[name].specs)


def test_a_worker_maps_the_file_instead_of_receiving_a_copy(tiny_root):
    dm = _stored(tiny_root)
    dm.setup("fit")
    train = dm.splits["train"]
    blob = pickle.dumps(train)
    assert len(blob) < train.specs.nbytes / 10
    copy = pickle.loads(blob)
    assert isinstance(copy.specs, np.memmap)
    for i in (0, len(train) - 1):
        assert torch.equal(copy[i][0], train[i][0]) and copy[i][1] == train[i][1]
