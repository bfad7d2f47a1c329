"""Each corpus scanner on a fixture tree of tiny real WAV files named by the corpus convention."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from parrot_ser.corpora import CANONICAL_LABELS, CORPORA, Manifest, list_corpora, scan_corpus
from parrot_ser.corpora.check import check_audio
from parrot_ser.corpora.iemocap import parse_emo_evaluation
from parrot_ser.errors import ConfigError, CorpusError, RegistryError


@pytest.fixture
def tone(tone_writer):
    def write(root: Path, rel: str, **kw) -> Path:
        return tone_writer(root / rel, seconds=kw.pop("seconds", 0.05), sr=kw.pop("sr", 8000), **kw)
    return write


def _by_id(man: Manifest) -> dict:
    return {u.utt_id: u for u in man.utterances}


def _problem_paths(man: Manifest) -> set[str]:
    return {p.path for p in man.problems}


def _common_invariants(man: Manifest) -> None:
    ids = [u.utt_id for u in man.utterances]
    assert len(ids) == len(set(ids))
    for u in man.utterances:
        assert u.label in CANONICAL_LABELS or man.label_policy.get("mode") == "asis"
        assert not Path(u.path).is_absolute() and man.abspath(u).is_file()


def test_registry_lists_every_corpus():
    names = [n for n, _ in list_corpora()]
    assert names == sorted(["cremad", "ravdess", "emodb", "mesd", "tess", "savee", "iemocap", "esd", "csv",
                            "folders", "emobox", "msp-podcast"])
    assert all(desc and "\n" not in desc for _, desc in list_corpora())


def test_emodb_extra_top_folder_stereo_and_bad_names(tmp_path, tone):
    top = "EmoDB_release/wav"
    tone(tmp_path, f"{top}/03a01Fa.wav")
    tone(tmp_path, f"{top}/10b02Wb.wav")
    tone(tmp_path, f"{top}/16a05Lc.wav", channels=2)
    tone(tmp_path, f"{top}/readme.wav")
    tone(tmp_path, f"{top}/99a01Fa.wav")
    (tmp_path / top / "._03a01Fa.wav").write_bytes(b"\x00\x05\x16\x07")
    man = scan_corpus("emodb", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert set(u) == {"03a01Fa", "10b02Wb", "16a05Lc"}
    assert (u["03a01Fa"].label, u["03a01Fa"].speaker, u["03a01Fa"].original_label) == ("happy", "03", "F")
    assert u["03a01Fa"].meta == {"gender": "male", "sentence": "a01", "version": "a"}
    assert (u["16a05Lc"].label, u["16a05Lc"].meta["gender"]) == ("boredom", "female")
    assert u["10b02Wb"].path == f"{top}/10b02Wb.wav"
    assert _problem_paths(man) == {f"{top}/readme.wav", f"{top}/99a01Fa.wav"}
    assert man.excluded == {"macOS resource-fork files (._*)": 1}


def test_cremad_empty_clip_and_demographics(tmp_path, tone):
    tone(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav")
    tone(tmp_path, "AudioWAV/1091_IEO_HAP_HI.wav", channels=2)
    sf.write(tmp_path / "AudioWAV/1076_MTI_SAD_XX.wav", np.zeros(0, np.float32), 16000)  # the real defect
    tone(tmp_path, "AudioWAV/1001_DFA_XYZ_XX.wav")
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    man = scan_corpus("cremad", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert set(u) == {"1001_DFA_ANG_XX", "1091_IEO_HAP_HI"}
    assert u["1001_DFA_ANG_XX"].meta == {"sentence": "DFA", "intensity": "unspecified", "gender": "male", "age": "51"}
    assert (u["1091_IEO_HAP_HI"].label, u["1091_IEO_HAP_HI"].speaker) == ("happy", "1091")
    probs = {p.path: p.problem for p in man.problems}
    assert "known empty clip" in probs["AudioWAV/1076_MTI_SAD_XX.wav"]
    assert "AudioWAV/1001_DFA_XYZ_XX.wav" in probs


def test_ravdess_song_video_and_stereo(tmp_path, tone):
    tone(tmp_path, "Actor_01/03-01-05-02-01-02-01.wav")
    tone(tmp_path, "Actor_01/03-01-01-01-01-01-01.wav", channels=2)
    tone(tmp_path, "Actor_02/03-02-03-01-02-01-02.wav")  # song
    (tmp_path / "Actor_02/01-01-03-01-01-01-02.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # full AV
    (tmp_path / "Actor_02/02-01-03-01-01-01-02.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # video only
    tone(tmp_path, "Actor_02/03-01-09-01-01-01-02.wav")  # emotion 09 does not exist
    man = scan_corpus("ravdess", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert set(u) == {"03-01-05-02-01-02-01", "03-01-01-01-01-01-01"}
    a = u["03-01-05-02-01-02-01"]
    assert (a.label, a.speaker, a.original_label) == ("angry", "01", "05")
    assert a.meta == {"gender": "male", "vocal_channel": "speech", "intensity": "strong", "statement": "01",
                      "sentence": "Kids are talking by the door", "repetition": "02"}
    assert sum(man.excluded.values()) == 3
    assert _problem_paths(man) == {"Actor_02/03-01-09-01-01-01-02.wav"}
    song = scan_corpus("ravdess", tmp_path, include_song=True)
    s = _by_id(song)["03-02-03-01-02-01-02"]
    assert (s.label, s.speaker, s.meta["gender"], s.meta["vocal_channel"]) == ("happy", "02", "female", "song")
    assert len(song) == 3


def test_mesd_groups_as_speakers(tmp_path, tone):
    tone(tmp_path, "MESD/Anger_F_A_abajo.wav")
    tone(tmp_path, "MESD/Happiness_C_B_niño.wav")
    tone(tmp_path, "MESD/Sadness_F_A_casa.wav")
    tone(tmp_path, "MESD/Joy_F_A_casa.wav")
    man = scan_corpus("mesd", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert {k: (v.label, v.speaker) for k, v in u.items()} == {
        "Anger_F_A_abajo": ("angry", "F_A"), "Happiness_C_B_niño": ("happy", "C_B"), "Sadness_F_A_casa": ("sad", "F_A")}
    assert u["Happiness_C_B_niño"].meta["age_group"] == "child"
    assert _problem_paths(man) == {"MESD/Joy_F_A_casa.wav"}


def test_tess_per_emotion_folders(tmp_path, tone):
    top = "TESS Toronto emotional speech set data"
    tone(tmp_path, f"{top}/OAF_angry/OAF_back_angry.wav")
    tone(tmp_path, f"{top}/YAF_pleasant_surprised/YAF_bath_ps.wav")
    tone(tmp_path, f"{top}/OAF_Fear/OAF_dog_fear.wav")
    tone(tmp_path, f"{top}/OAF_Fear/OAF_dog_sad.wav")  # file says sad, folder says fear
    tone(tmp_path, f"{top}/OAF_Fear/dog.wav")
    man = scan_corpus("tess", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert {k: (v.label, v.speaker, v.original_label) for k, v in u.items()} == {
        "OAF_back_angry": ("angry", "OAF", "angry"), "YAF_bath_ps": ("surprise", "YAF", "ps"),
        "OAF_dog_fear": ("fear", "OAF", "fear")}
    assert u["YAF_bath_ps"].meta == {"gender": "female", "age_group": "younger", "word": "bath"}
    assert _problem_paths(man) == {f"{top}/OAF_Fear/OAF_dog_sad.wav", f"{top}/OAF_Fear/dog.wav"}


def test_savee_nested_and_flat(tmp_path, tone):
    tone(tmp_path, "nested/AudioData/DC/a01.wav")
    tone(tmp_path, "nested/AudioData/JK/sa03.wav")
    tone(tmp_path, "nested/AudioData/JK/x03.wav")
    tone(tmp_path, "flat/DC_su01.wav")
    tone(tmp_path, "flat/KL_n12.wav")
    tone(tmp_path, "flat/XX_a01.wav")
    nested = scan_corpus("savee", tmp_path / "nested")
    assert {k: (v.label, v.speaker) for k, v in _by_id(nested).items()} == {
        "DC_a01": ("angry", "DC"), "JK_sa03": ("sad", "JK")}
    assert _problem_paths(nested) == {"AudioData/JK/x03.wav"}
    flat = scan_corpus("savee", tmp_path / "flat")
    _common_invariants(flat)
    assert {k: (v.label, v.speaker, v.meta["sentence"]) for k, v in _by_id(flat).items()} == {
        "DC_su01": ("surprise", "DC", "01"), "KL_n12": ("neutral", "KL", "12")}
    assert _problem_paths(flat) == {"XX_a01.wav"}


EMO_EVAL = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]  Ses01F_impro01_M000  exc  [4.0000, 3.5000, 3.0000]
[14.8872 - 18.0175]\tSes01F_impro01_F001\txxx\t[2.5000, 3.5000, 3.5000]
[19.2900 - 20.7875]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]
[21.3257 - 24.7400]\tSes01F_impro01_F002\tang\t[1.5000, 4.0000, 4.5000]
[25.0000 - 26.0000]\tSes01F_impro01_F003\tsad\t[2.0000, 2.0000, 2.0000]
"""


def _iemocap_tree(root: Path, tone) -> Path:
    base = root / "IEMOCAP_full_release"
    for utt in ("F000", "M000", "F001", "M001", "F002", "F009"):  # F003 labelled, no wav; F009 wav, no label
        tone(base, f"Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_{utt}.wav")
    ev = base / "Session1/dialog/EmoEvaluation"
    ev.mkdir(parents=True)
    (ev / "Ses01F_impro01.txt").write_text(EMO_EVAL)
    (ev / "Categorical").mkdir()
    tone(base, "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav")
    ev2 = base / "Session2/dialog/EmoEvaluation"
    ev2.mkdir(parents=True)
    (ev2 / "Ses02M_script01_1.txt").write_text("[1.0 - 2.0]\tSes02M_script01_1_F000\thap\t[3.0, 3.0, 3.0]\n")
    return base


def test_iemocap_emo_evaluation_parsing():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "e.txt"
        p.write_text(EMO_EVAL)
        got = parse_emo_evaluation(p)
    assert set(got) == {f"Ses01F_impro01_{x}" for x in ("F000", "M000", "F001", "M001", "F002", "F003")}
    code, meta = got["Ses01F_impro01_M000"]
    assert code == "exc" and meta == {"start": "10.0100", "end": "11.3925", "valence": "4.0000",
                                      "arousal": "3.5000", "dominance": "3.0000"}


def test_iemocap_four_class_and_full(tmp_path, tone):
    _iemocap_tree(tmp_path, tone)
    man = scan_corpus("iemocap", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert {k: (v.label, v.speaker, v.original_label) for k, v in u.items()} == {
        "Ses01F_impro01_F000": ("neutral", "Ses01F", "neu"),
        "Ses01F_impro01_M000": ("happy", "Ses01M", "exc"),  # exc merged into hap; spoken by the male actor
        "Ses01F_impro01_F002": ("angry", "Ses01F", "ang"),
        "Ses02M_script01_1_F000": ("happy", "Ses02F", "hap"),
    }
    m = u["Ses01F_impro01_M000"].meta
    assert (m["session"], m["gender"], m["style"], m["dialog"]) == ("1", "male", "improvised", "Ses01F_impro01")
    assert u["Ses02M_script01_1_F000"].meta["style"] == "scripted"
    assert man.excluded == {"fru (not in the 4-class label set)": 1, "xxx (no annotator majority)": 1}
    probs = {p.path: p.problem for p in man.problems}
    assert "no label" in probs["IEMOCAP_full_release/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F009.wav"]
    assert "missing" in probs["IEMOCAP_full_release/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F003.wav"]

    full = _by_id(scan_corpus("iemocap", tmp_path, full_labels=True))
    assert full["Ses01F_impro01_M000"].label == "excited"
    assert full["Ses01F_impro01_M001"].label == "frustration"
    assert "Ses01F_impro01_F001" not in full  # xxx never becomes a label

    dim = scan_corpus("iemocap", tmp_path, dimensions=True)  # xxx and fru rows kept, unlabelled, with V/A/D
    d = _by_id(dim)
    assert dim.targets == ["valence", "arousal", "dominance"]
    assert set(d) == set(u) | {"Ses01F_impro01_F001", "Ses01F_impro01_M001"}
    assert (d["Ses01F_impro01_F001"].label, d["Ses01F_impro01_M001"].label) == ("", "")
    assert dim.target_values(d["Ses01F_impro01_F002"]) == [1.5, 4.0, 4.5]
    assert not dim.excluded and dim.label_policy["mode"] == "canonical"


def test_esd_with_and_without_split(tmp_path, tone):
    tone(tmp_path, "ESD/0011/Angry/train/0011_000351.wav")
    tone(tmp_path, "ESD/0011/Neutral/evaluation/0011_000001.wav")
    tone(tmp_path, "ESD/0001/Happy/0001_000701.wav")
    tone(tmp_path, "ESD/0011/Angry/notes.wav")
    man = scan_corpus("esd", tmp_path)
    _common_invariants(man)
    u = _by_id(man)
    assert {k: (v.label, v.speaker, v.meta.get("split"), v.meta["language"]) for k, v in u.items()} == {
        "0011_000351": ("angry", "0011", "train", "english"),
        "0011_000001": ("neutral", "0011", "evaluation", "english"),
        "0001_000701": ("happy", "0001", None, "mandarin"),
    }
    assert _problem_paths(man) == {"ESD/0011/Angry/notes.wav"}


def test_csv_corpus(tmp_path, tone):
    tone(tmp_path, "data/a.wav")
    b = tone(tmp_path, "elsewhere/b.flac")
    tone(tmp_path, "data/c.wav")
    (tmp_path / "data/list.csv").write_text(
        "path,label,speaker,split\n"
        f"a.wav,Anger,s1,train\n{b},happiness,s2,test\nmissing.wav,sad,s1,train\nc.wav,distressed,s3,test\n")
    man = scan_corpus("csv", tmp_path / "data/list.csv", labels="canonical")
    assert man.root == tmp_path / "data"
    u = _by_id(man)
    assert (u["a"].label, u["a"].original_label, u["a"].speaker, u["a"].meta) == ("angry", "Anger", "s1", {"split": "train"})
    assert man.abspath(u[str(b.with_suffix("")).replace("\\", "/")]) == b
    assert len(scan_corpus("csv", tmp_path / "data", labels="canonical")) == 2  # a folder holding exactly one CSV
    probs = {p.path: p.problem for p in man.problems}
    assert "does not exist" in probs["missing.wav"] and "'distressed'" in probs["c.wav"]
    own = scan_corpus("csv", tmp_path / "data/list.csv")  # default: one unknown label -> the data's own labels
    assert sorted(own.labels()) == ["Anger", "distressed", "happiness"] and own.label_policy["mode"] == "asis"
    assert "'distressed'" in own.label_policy["note"]
    (tmp_path / "bad.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(CorpusError, match="lacks column"):
        scan_corpus("csv", tmp_path / "bad.csv")


def test_folders_corpus_with_speaker_regex(tmp_path, tone):
    tone(tmp_path, "angry/spk1_001.wav")
    tone(tmp_path, "Happy/spk2-003.wav")
    tone(tmp_path, "happy/x.wav")
    tone(tmp_path, "sad/deeper/spk1_002.wav")
    tone(tmp_path, "weird/spk1_004.wav")
    assert scan_corpus("folders", tmp_path).labels() == ["Happy", "angry", "happy", "weird"]  # 'weird': own labels
    man = scan_corpus("folders", tmp_path, labels="canonical")
    assert {k: (v.label, v.speaker) for k, v in _by_id(man).items()} == {
        "angry/spk1_001": ("angry", "spk1"), "Happy/spk2-003": ("happy", "spk2"), "happy/x": ("happy", "x")}
    assert _problem_paths(man) == {"sad/deeper/spk1_002.wav", "weird/spk1_004.wav"}
    strict = scan_corpus("folders", tmp_path, speaker_regex=r"^spk(?P<speaker>\d+)_", labels="canonical")
    assert {u.speaker for u in strict.utterances} == {"1"}
    assert "happy/x.wav" in _problem_paths(strict)
    with pytest.raises(ConfigError, match="invalid"):
        scan_corpus("folders", tmp_path, speaker_regex="(")
    with pytest.raises(ConfigError, match="group"):
        scan_corpus("folders", tmp_path, speaker_regex="spk")


def test_scan_corpus_errors(tmp_path, tone):
    with pytest.raises(RegistryError, match="unknown corpus 'nope'.*emodb"):
        scan_corpus("nope", tmp_path)
    with pytest.raises(CorpusError, match="corpus root not found"):
        scan_corpus("emodb", tmp_path / "missing")
    tone(tmp_path, "notes/hello.wav")
    with pytest.raises(CorpusError, match="no emodb utterances found.*hello.wav"):
        scan_corpus("emodb", tmp_path)
    with pytest.raises(CorpusError, match="no IEMOCAP Session"):
        scan_corpus("iemocap", tmp_path)
    with pytest.raises(ConfigError, match="include_song"):
        scan_corpus("emodb", tmp_path, include_song=True)
    assert set(CORPORA.get("ravdess").options) == {"include_song"}


def test_manifest_csv_round_trip_and_duplicates(tmp_path, tone):
    tone(tmp_path, "a/wav/03a01Fa.wav")
    tone(tmp_path, "b/wav/03a01Fa.wav")  # the same clip twice in a re-packaged tree
    tone(tmp_path, "b/wav/08a02Nb.wav")
    man = scan_corpus("emodb", tmp_path)
    assert len(man) == 2 and "duplicate of a/wav/03a01Fa.wav" in man.problems[0].problem
    back = Manifest.from_csv(man.to_csv(tmp_path / "out/m.csv"))
    assert [(u.utt_id, u.path, u.label, u.speaker, u.meta) for u in back.utterances] == [
        (u.utt_id, u.path, u.label, u.speaker, u.meta) for u in man.utterances]
    assert back.corpus == "emodb" and back.problems == man.problems


def test_check_audio_reports_bad_files(tmp_path, tone):
    tone(tmp_path, "angry/s1_a.wav", seconds=0.5)
    tone(tmp_path, "sad/s2_b.wav", seconds=0.25, channels=2)
    (tmp_path / "sad/s3_c.wav").write_text("not audio")
    man = scan_corpus("folders", tmp_path)
    infos, problems = check_audio(man, workers=2)
    assert sorted(round(i.duration, 3) for i in infos.values()) == [0.25, 0.5]
    assert [(p.path, p.problem.split(" (")[0]) for p in problems] == [("sad/s3_c.wav", "not an audio file")]
    assert Counter(u.label for u in man.utterances) == {"angry": 1, "sad": 2}
