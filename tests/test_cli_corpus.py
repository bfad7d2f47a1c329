"""`parrot-ser corpus ...` through typer's CliRunner: JSON shape, check-audio, manifest, error lines."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.corpora import Manifest


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def ravdess_root(tmp_path, tone_writer):
    for rel in ("Actor_01/03-01-05-02-01-02-01.wav", "Actor_01/03-01-01-01-01-01-01.wav",
                "Actor_02/03-01-04-01-01-01-02.wav", "Actor_02/03-02-03-01-02-01-02.wav"):
        tone_writer(tmp_path / rel, seconds=0.25, sr=8000)
    (tmp_path / "Actor_02/03-01-08-01-01-01-02.wav").write_text("not audio")  # well named, bad content
    (tmp_path / "Actor_02/oops.wav").write_text("x")
    return tmp_path


def test_list(runner):
    res = runner.invoke(app, ["corpus", "list"])
    assert res.exit_code == 0
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 12 and lines[0].startswith("cremad ") and any(line.startswith("iemocap ") for line in lines)


def test_inspect_json(runner, ravdess_root):
    res = runner.invoke(app, ["corpus", "inspect", str(ravdess_root), "--corpus", "ravdess", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc.pop("label_policy")["mode"] == "canonical"
    assert doc == {
        "corpus": "ravdess", "n_utterances": 4, "n_speakers": 2, "n_unknown_speaker": 0, "targets": {},
        "excluded": {"song files (vocal channel 02; use include_song)": 1},
        "labels": {"angry": 1, "neutral": 1, "sad": 1, "surprise": 1},
        "speakers": {"01": 2, "02": 2}, "total_seconds": None,
        "problems": [{"path": "Actor_02/oops.wav",
                      "problem": "name does not follow RAVDESS MM-VV-EE-II-SS-RR-AA.wav; skipped"}],
    }


def test_inspect_check_audio_and_song(runner, ravdess_root):
    res = runner.invoke(app, ["corpus", "inspect", str(ravdess_root), "-c", "ravdess", "--json", "--check-audio",
                              "--include-song", "--workers", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the progress bar went to stderr, stdout holds only the JSON
    assert doc["n_utterances"] == 5 and doc["labels"]["happy"] == 1
    assert doc["total_seconds"] == pytest.approx(1.0)  # 4 readable files x 0.25 s
    assert [p["path"] for p in doc["problems"]] == ["Actor_02/03-01-08-01-01-01-02.wav", "Actor_02/oops.wav"]
    assert doc["problems"][0]["problem"].startswith("not an audio file")


def test_inspect_human_table(runner, ravdess_root):
    res = runner.invoke(app, ["corpus", "inspect", str(ravdess_root), "-c", "ravdess", "--check-audio"])
    assert res.exit_code == 0, res.output
    assert "4 utterances, 2 speakers, 4 labels" in res.stdout and "Actor_02/oops.wav" in res.stdout
    assert "song files" in res.stdout  # exclusions are shown, not hidden


def test_manifest_writes_csv(runner, ravdess_root, tmp_path):
    out = tmp_path / "o" / "m.csv"
    res = runner.invoke(app, ["corpus", "manifest", str(ravdess_root), "-c", "ravdess", "-o", str(out)])
    assert res.exit_code == 0, res.output
    man = Manifest.from_csv(out)
    assert len(man) == 4 and man.corpus == "ravdess" and man.root == ravdess_root.resolve()
    assert all(man.abspath(u).is_file() for u in man.utterances)
    assert "wrote" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("args,needle", [
    (["corpus", "inspect", "/nonexistent/corpus", "-c", "emodb"], "corpus root not found"),
    (["corpus", "inspect", ".", "-c", "nope"], "unknown corpus 'nope'"),
    (["corpus", "manifest", "/nonexistent/corpus", "-c", "emodb", "-o", "x.csv"], "corpus root not found"),
    (["corpus", "inspect", ".", "-c", "emodb", "--include-song"], "--include-song applies to corpus ravdess"),
])
def test_errors_are_one_line(runner, args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)  # a clean typer.Exit(2), not an escaped exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:")
    assert res.stdout == ""


def test_wrong_layout_is_one_line(runner, tmp_path, tone_writer):
    tone_writer(tmp_path / "x" / "hello.wav", seconds=0.05, sr=8000)
    res = runner.invoke(app, ["corpus", "inspect", str(tmp_path), "-c", "cremad", "--json"])
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no cremad utterances found" in lines[0] and "x/hello.wav" in lines[0]
