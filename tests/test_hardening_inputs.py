"""Issue 12, manifests, protocol and store: malformed CSVs, unlabelled rows, folds that cannot be
stratified, bad option values, OS errors (disk full, read-only, permission) as one line, and stores
that must never be taken for complete. Tiny synthetic data only."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.corpora import scan_corpus
from parrot_ser.errors import ConfigError
from parrot_ser.training.splits import make_folds, split_validation

runner = CliRunner()
LABELS7 = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")


def _one_error_line(r, *needles: str) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _tone(path: Path, f0: float = 220.0, n: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(np.arange(n) * 2 * np.pi * f0 / 16000)).astype(np.float32), 16000)
    return path


def _csv_corpus(root: Path, rows: list[list[str]]) -> Path:
    for r in rows[1:]:
        if r and r[0].endswith(".wav"):
            _tone(root / r[0])
    table = root / "corpus.csv"
    table.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    return table


# --- CSV corpus and manifests --------------------------------------------------------------------

def test_csv_corpus_extra_comma_row_is_a_problem_naming_the_line(tmp_path):
    table = _csv_corpus(tmp_path, [["path", "label", "speaker"], ["a.wav", "angry", "s1"],
                                   ["b.wav", "sad", "s1", "oops"], ["c.wav", "", "s2"], ["d.wav", "happy", ""]])
    man = scan_corpus("csv", table)
    assert [u.path for u in man.utterances] == ["a.wav"]
    text = {p.path: p.problem for p in man.problems}
    assert "more field(s) than the 3 header columns" in text["corpus.csv:3"]
    assert text["corpus.csv:4"].startswith("empty label") and text["corpus.csv:5"].startswith("empty speaker")


def test_latin1_and_binary_tables_are_one_line_errors(tmp_path):
    lat = tmp_path / "lat" / "corpus.csv"
    lat.parent.mkdir()
    lat.write_bytes("path,label,speaker\nj\xf6rg.wav,angry,s1\n".encode("latin-1"))
    r = runner.invoke(app, ["corpus", "inspect", str(lat), "--corpus", "csv"])
    _one_error_line(r, str(lat), "not UTF-8", "0xf6")
    binary = tmp_path / "bin" / "corpus.csv"
    binary.parent.mkdir()
    binary.write_bytes(bytes(range(256)) * 4)
    r = runner.invoke(app, ["corpus", "inspect", str(binary), "--corpus", "csv"])
    _one_error_line(r, str(binary), "binary data")
    r = runner.invoke(app, ["extract", "--manifest", str(binary), "-e", "logmel", "--out", str(tmp_path / "f")])
    _one_error_line(r, str(binary), "binary data")


def _manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "path", "label", "speaker"])
        for i, (p, lab, spk) in enumerate(rows):
            _tone(path.parent / p)
            w.writerow([f"u{i}", p, lab, spk])
    return path


def test_extract_refuses_unlabelled_rows_naming_them(tmp_path):
    m = _manifest(tmp_path / "m.csv", [("a.wav", "angry", "s1"), ("b.wav", "", "s1"), ("c.wav", "grumpy", "s2"),
                                       ("d.wav", "sad", "")])
    r = runner.invoke(app, ["extract", "--manifest", str(m), "-e", "logmel", "--out", str(tmp_path / "f")])
    line = _one_error_line(r, str(m), "1 row(s) with an empty label", "line 3 (u1: '')",
                           "1 row(s) without a speaker: line 5 (u3)")
    assert "grumpy" not in line  # any label string is trainable: the label set is the data's
    assert not (tmp_path / "f").exists()  # refused before any work


def test_manifest_with_an_extra_field_names_the_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("utt_id,path,label,speaker\nu0,a.wav,angry,s1\nu1,b.wav,sad,s1,extra\n", encoding="utf-8")
    r = runner.invoke(app, ["extract", "--manifest", str(m), "-e", "logmel", "--out", str(tmp_path / "f")])
    _one_error_line(r, f"{m}:3", "more field(s)", "unquoted comma")


# --- folds ---------------------------------------------------------------------------------------

def test_small_corpus_folds_and_validation_with_sklearn_raising():
    y = [LABELS7[i % 7] for i in range(40)]  # 40 utterances, 10 speakers, 7 classes
    sp = [f"s{i % 10}" for i in range(40)]
    folds = make_folds(y, sp, n_folds=5, seed=0)
    assert len(folds) == 5 and all(len(f.val) > 0 for f in folds)
    for f in folds:  # validation speakers are whole speakers of the training side
        assert not {sp[i] for i in f.val} & {sp[i] for i in f.train}
    tr, va = split_validation(np.arange(40), y, sp, seed=3)
    tr2, va2 = split_validation(np.arange(40), y, sp, seed=3)
    assert np.array_equal(va, va2) and len(va) == 4  # seeded, 10 % of the speakers
    with pytest.raises(ConfigError, match=r"cannot be stratified.*angry 2.*--folds 2"):
        make_folds(y[:14], sp[:14], n_folds=5, seed=0)


def test_run_cv_on_a_small_seven_class_corpus(tmp_path):
    from parrot_ser.training import SERData, TrainConfig
    from parrot_ser.training.run import run_cv

    rng = np.random.default_rng(0)
    y = np.arange(40) % 7
    x = rng.normal(size=(40, 8)).astype(np.float32) + y[:, None]
    data = SERData([x], y, [f"u{i:02d}" for i in range(40)], list(LABELS7), speakers=[f"s{i % 10}" for i in range(40)])
    res = run_cv(None, ["e"], "fcn", TrainConfig(epochs=1), [0], "speaker-kfold", tmp_path / "run", n_folds=5,
                 data=(data, [{} for _ in range(40)], {"e": {}}))
    assert res["summary"]["n_folds"] == 5


# --- option values -------------------------------------------------------------------------------

def test_bad_option_values_are_one_line_errors(tmp_path):
    import torch

    f = tmp_path / "file"
    f.write_text("x")
    base = ["train", "--features", str(tmp_path / "nostore"), "--encoder", "logmel", "--model", "fcn"]
    _one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--lr", "nan"]), "lr", "finite")
    _one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--device", "bogus"]),
                    "'bogus' is not a torch device")
    if not torch.cuda.is_available():
        _one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--device", "cuda"]),
                        "no CUDA GPU", "cpu")
    _one_error_line(runner.invoke(app, [*base, "--out", str(f)]), str(f), "--out is a file")
    _one_error_line(runner.invoke(app, ["extract", "--manifest", "m.csv", "-e", "logmel", "--out", str(f)]),
                    "--out is a file")
    _one_error_line(runner.invoke(app, ["extract", str(tmp_path), "--corpus", "folders", "-e", "logmel",
                                        "--device", "bogus", "--out", str(tmp_path / "s")]), "not a torch device")
    for w in ("inf", "nan"):
        _one_error_line(runner.invoke(app, ["predict", str(tmp_path), "a.wav", "--window", w]), "--window", "finite")
    _one_error_line(runner.invoke(app, ["predict", str(tmp_path), "a.wav", "--hop", "inf"]), "--hop")
    _one_error_line(runner.invoke(app, ["predict", str(tmp_path), "a.wav", "--csv", str(tmp_path)]),
                    "--csv is a folder")


@pytest.mark.parametrize("code,needle", [(errno.EACCES, "permission denied"), (errno.ENOSPC, "no space left"),
                                         (errno.EROFS, "read-only file system")])
def test_any_os_error_is_one_line_naming_the_file(tmp_path, monkeypatch, code, needle):
    from parrot_ser.cli.common import os_error_message
    from parrot_ser.corpora.base import Manifest

    root = tmp_path / "c"
    _tone(root / "angry" / "s1_a.wav")

    def fail(self, path):
        raise OSError(code, "strerror", str(path))

    monkeypatch.setattr(Manifest, "to_csv", fail)
    out = tmp_path / "m.csv"
    r = runner.invoke(app, ["corpus", "manifest", str(root), "--corpus", "folders", "-o", str(out)])
    _one_error_line(r, str(out), needle)
    assert os_error_message(OSError(code, "x", "f")).startswith("f: ")


# --- store ---------------------------------------------------------------------------------------

def _folders_corpus(root: Path, n: int = 6) -> Path:
    for k in range(n):
        _tone(root / ("angry" if k % 2 else "sad") / f"s{k % 3}_{k}.wav", f0=200 + 30 * k)
    return root


def test_disk_full_during_extraction_is_one_line_and_resumable(tmp_path, monkeypatch):
    from parrot_ser.features import writer

    root = _folders_corpus(tmp_path / "c")
    store = tmp_path / "feat"
    args = ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out", str(store), "--chunk-size", "2",
            "--quiet", "--json"]
    real = writer._atomic_npz
    calls = {"n": 0}

    def full_after_one(path, **arrays):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, **arrays)

    monkeypatch.setattr(writer, "_atomic_npz", full_after_one)
    _one_error_line(runner.invoke(app, args), f"feature store {store} (logmel)", "no space left")
    assert not (store / "logmel" / "meta.json").exists()  # never claims to be complete
    monkeypatch.setattr(writer, "_atomic_npz", real)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["encoders"]["logmel"]
    assert rep["resumed"] == 2 and rep["computed_this_run"] == 4 and rep["n_ok"] == 6


def test_disk_full_while_consolidating_is_not_a_bus_error(tmp_path, monkeypatch):
    import os

    root = _folders_corpus(tmp_path / "c")
    store = tmp_path / "feat"
    args = ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out", str(store), "--quiet", "--json"]

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    _one_error_line(runner.invoke(app, args), "no space left")
    assert not (store / "logmel" / "meta.json").exists()
    monkeypatch.undo()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["encoders"]["logmel"]["computed_this_run"] == 0  # the chunks were kept


def test_read_only_store_is_one_line(tmp_path, monkeypatch):
    from parrot_ser.features import writer

    def ro(path, obj):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(writer, "_atomic_json", ro)
    root = _folders_corpus(tmp_path / "c")
    r = runner.invoke(app, ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out",
                            str(tmp_path / "feat"), "--quiet"])
    _one_error_line(r, "read-only file system", str(tmp_path / "feat"))


def test_train_refuses_an_entry_missing_manifest_rows_and_bad_labels(tmp_path):
    root = _folders_corpus(tmp_path / "c")
    store = tmp_path / "feat"
    assert runner.invoke(app, ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out", str(store),
                               "--quiet"]).exit_code == 0
    man = store / "manifest.csv"
    text = man.read_text(encoding="utf-8")
    # a row another extraction added to the store manifest without finishing this entry
    man.write_text(text + "angry/s9_x,angry/s9_x.wav,angry,s9,angry\n", encoding="utf-8")
    base = ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--epochs", "1",
            "--folds", "2"]
    _one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "r")]),
                    "logmel: 1 of 7 utterances", "angry/s9_x", "parrot-ser extract --manifest")
    # a store written before labels were checked: the row is named
    man.write_text(text.replace(",sad,", ",,", 1), encoding="utf-8")
    _one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "r2")]),
                    "1 row(s) with an empty label", "line 5 (sad/s0_0: '')")


def test_disk_full_while_training_names_the_run_folder(tmp_path, monkeypatch):
    from parrot_ser.training import run as run_mod

    root = _folders_corpus(tmp_path / "c")
    store = tmp_path / "feat"
    assert runner.invoke(app, ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out", str(store),
                               "--quiet"]).exit_code == 0

    def full(path, obj):  # a write on an open file: the OSError carries no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_mod, "write_json_atomic", full)
    r = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn",
                            "--epochs", "1", "--folds", "2", "--out", str(tmp_path / "run")])
    _one_error_line(r, f"run folder {tmp_path / 'run'}: no space left on the device")


def test_a_closed_stdout_pipe_is_not_reported_as_an_error(tmp_path, monkeypatch):
    from parrot_ser.corpora.base import Manifest

    _tone(tmp_path / "c" / "angry" / "s1_a.wav")

    def closed(self, path):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(Manifest, "to_csv", closed)
    r = runner.invoke(app, ["corpus", "manifest", str(tmp_path / "c"), "--corpus", "folders", "-o",
                            str(tmp_path / "m.csv")])
    assert r.exit_code == 141 and "error:" not in r.output and "Traceback" not in r.output
