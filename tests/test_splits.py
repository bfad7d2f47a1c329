"""Speaker-independent folds: leakage assertion, disjointness, stratification, reproducibility."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from parrot_ser.errors import ConfigError, LeakageError
from parrot_ser.training.splits import Fold, assert_speaker_independent, make_folds, split_validation

CLASSES = ("angry", "sad", "happy", "neutral")


def corpus(n_spk: int = 12, per: int = 3, sessions: int = 3):
    labels, speakers, meta = [], [], []
    for s in range(n_spk):
        for c in CLASSES:
            for _k in range(per):
                labels.append(c)
                speakers.append(f"spk{s:02d}")
                meta.append({"session": str(s % sessions + 1), "split": str(s % 4)})
    return labels, speakers, meta


def check_fold_sides(folds, labels, speakers, *, covers_all: bool = True):
    sp = np.asarray(speakers)
    tested = np.concatenate([f.test for f in folds])
    if covers_all:  # every utterance is tested exactly once
        assert sorted(tested.tolist()) == list(range(len(labels)))
    for f in folds:
        tr, va, te = set(sp[f.train]), set(sp[f.val]), set(sp[f.test])
        assert not (tr & te) and not (va & te) and not (tr & va)
        assert len(f.train) + len(f.val) + len(f.test) == len(labels)
        assert len(va) >= 1  # validation speakers exist and come from the training side


def test_leakage_assertion_names_speaker_and_fold():
    speakers = ["a", "a", "b", "b", "c", "c"]
    good = Fold(0, np.array([0, 1]), np.array([2, 3]), np.array([4, 5]))
    assert_speaker_independent([good], speakers)
    leaky = Fold(1, np.array([0, 2]), np.array([3]), np.array([1, 4, 5]))  # speaker a on both sides
    with pytest.raises(LeakageError, match=r"fold 1.*speaker 'a'.*train and test"):
        assert_speaker_independent([good, leaky], speakers)
    val_leak = Fold(2, np.array([0, 1]), np.array([2]), np.array([3, 4, 5]))  # b in val and test
    with pytest.raises(LeakageError, match=r"fold 2.*speaker 'b'.*val and test"):
        assert_speaker_independent([val_leak], speakers)


def test_speaker_kfold_disjoint_stratified_and_reproducible():
    labels, speakers, _ = corpus()
    folds = make_folds(labels, speakers, n_folds=4, seed=3)
    assert len(folds) == 4
    check_fold_sides(folds, labels, speakers)
    lab = np.asarray(labels)
    for f in folds:  # stratified: every class in every test fold, in equal shares here
        counts = Counter(lab[f.test])
        assert set(counts) == set(CLASSES) and len(set(counts.values())) == 1
        assert set(lab[f.val]) == set(CLASSES)
        assert len(set(np.asarray(speakers)[f.val])) == 1  # 10% of 9 training speakers -> 1
    again = make_folds(labels, speakers, n_folds=4, seed=3)
    assert all(np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val) for a, b in zip(folds, again))
    other = make_folds(labels, speakers, n_folds=4, seed=4)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(folds, other))
    desc = folds[0].describe(speakers)
    assert desc["test_speakers"] and set(desc["test_speakers"]).isdisjoint(desc["train_speakers"])


def test_validation_fraction_scales_with_speakers():
    labels, speakers, _ = corpus(n_spk=40, per=1)
    tr, va = split_validation(np.arange(len(labels)), labels, speakers, fraction=0.1, seed=0)
    n_val_spk = len(set(np.asarray(speakers)[va]))
    assert n_val_spk == 4 and set(np.asarray(speakers)[va]).isdisjoint(np.asarray(speakers)[tr])
    one = [0, 1, 2, 3]  # a single training speaker: no validation side
    tr1, va1 = split_validation(np.asarray(one), labels, speakers, fraction=0.1, seed=0)
    assert len(va1) == 0 and list(tr1) == one


def test_loso_sessions_and_predefined():
    labels, speakers, meta = corpus(n_spk=6)
    loso = make_folds(labels, speakers, protocol="loso", seed=0)
    assert len(loso) == 6 and [f.name for f in loso] == [f"speaker spk{s:02d}" for s in range(6)]
    check_fold_sides(loso, labels, speakers)
    sess = make_folds(labels, speakers, protocol="iemocap-sessions", meta=meta, seed=0)
    assert [f.name for f in sess] == ["session 1", "session 2", "session 3"]
    check_fold_sides(sess, labels, speakers)
    pre = make_folds(labels, speakers, protocol="predefined", meta=meta, seed=0)
    assert len(pre) == 4
    check_fold_sides(pre, labels, speakers)
    # train/dev/test column: one fold, dev = validation side
    tdt = [{"split": {0: "train", 1: "train", 2: "train", 3: "dev", 4: "test", 5: "test"}[int(s[3:])]}
           for s in speakers]
    (fold,) = make_folds(labels, speakers, protocol="predefined", meta=tdt)
    assert set(np.asarray(speakers)[fold.val]) == {"spk03"}
    assert set(np.asarray(speakers)[fold.test]) == {"spk04", "spk05"}


def test_predefined_split_that_leaks_is_refused():
    labels, speakers, _ = corpus(n_spk=3, per=2)
    meta = [{"split": "test" if i % 2 else "train"} for i in range(len(labels))]  # same speakers on both sides
    with pytest.raises(LeakageError, match="speaker 'spk00'"):
        make_folds(labels, speakers, protocol="predefined", meta=meta)


def test_bad_protocol_inputs_are_config_errors():
    labels, speakers, meta = corpus(n_spk=3)
    with pytest.raises(ConfigError, match="at least 5 speakers"):
        make_folds(labels, speakers, n_folds=5)
    with pytest.raises(ConfigError, match="session"):
        make_folds(labels, speakers, protocol="iemocap-sessions", meta=[{} for _ in labels])
    with pytest.raises(ConfigError, match="unknown protocol"):
        make_folds(labels, speakers, protocol="random")
    with pytest.raises(ConfigError, match="split"):
        make_folds(labels, speakers, protocol="predefined", meta=[{"split": "x?"} for _ in labels])
