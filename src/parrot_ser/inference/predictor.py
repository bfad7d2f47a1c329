"""``load_model(MODEL_DIR).predict(x)``: audio -> frozen encoders -> standardiser -> head(s) -> labels.

Ensembles: a bundle exported without --refit holds every fold x seed model of the run; the
prediction is the mean of the members' softmax probabilities (each member with its own
standardiser, as in training).

Batch-dependent models (paper PARROT: the OT plan couples the rows of a batch) would give an
utterance a different answer depending on what else is in the batch. We fix it: each utterance is
scored in its own batch made of the utterance plus the bundle's fixed *anchor* rows (K training
utterances chosen at export, seeded), and only the utterance's row is read. With no anchors in the
bundle each utterance is scored alone (batch of 1: the OT branch is then the identity). Either way
an utterance's prediction never depends on the other inputs of the call.

Long recordings are split into windows (``window_spans``); the recording's prediction is the mean
of its windows' probabilities and the windows are reported too."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.audio import check_waveform, resample
from parrot_ser.errors import (
    BundleError,
    ConfigError,
    ParrotError,
)
from parrot_ser.files import json_plain
from parrot_ser.layer_choice import LAYER_MEANING, layer_position, legacy_position, parse_layer, select_layer
from parrot_ser.models import collate

# Windowing defaults (seconds): recordings up to LONG_SECONDS are scored whole; longer ones in
# WINDOW_SECONDS windows every HOP_SECONDS (SER corpora hold 1-10 s utterances).
LONG_SECONDS = 20.0
WINDOW_SECONDS = 10.0
HOP_SECONDS = 5.0


@dataclass
class Prediction:
    """One recording (or one window of it: ``start``/``end`` in seconds, ``window`` its index).
    ``dimensions``: the predicted value of each dimension (arousal, ...) in the training data's own
    scale, for models trained with one; a regression-only model has no ``label`` (None) and no
    probabilities."""

    label: str | None
    probabilities: dict[str, float]
    path: str | None = None
    start: float = 0.0
    end: float = 0.0
    window: int | None = None
    windows: list[Prediction] = field(default_factory=list)
    dimensions: dict[str, float] = field(default_factory=dict)

    def scores(self, top_k: int | None = None) -> list[dict[str, Any]]:
        """The Hugging Face audio-classification pipeline shape: [{"label", "score"}], highest first.
        A regression-only model has no classes: its dimensions in the model's order, each value as the
        score (what HF pipelines give for a regression head: the raw output, no softmax)."""
        if not self.probabilities:
            return [{"label": k, "score": float(v)} for k, v in list(self.dimensions.items())[:top_k]]
        ranked = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        return [{"label": k, "score": float(v)} for k, v in ranked[:top_k]]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path}
        if self.label is not None:
            d.update(label=self.label, probabilities={k: round(v, 6) for k, v in self.probabilities.items()})
        if self.dimensions:
            d["dimensions"] = {k: round(v, 6) for k, v in self.dimensions.items()}
        if self.label is not None or self.dimensions:  # the pipeline shape, as pipeline() and the service give it
            d["scores"] = [{"label": s["label"], "score": round(s["score"], 6)} for s in self.scores()]
        d.update(start=round(self.start, 3), end=round(self.end, 3))
        if self.window is not None:
            d["window"] = self.window
        if self.windows:
            d["windows"] = [w.to_dict() for w in self.windows]
        return d


def window_spans(n_samples: int, sr: int, window: float | None = None, hop: float | None = None,
                 long_seconds: float = LONG_SECONDS, default_window: float = WINDOW_SECONDS,
                 default_hop: float | None = None) -> list[tuple[int, int]]:
    """Sample ranges to score. ``window`` None: automatic (whole recording up to ``long_seconds``,
    else ``default_window`` windows every ``default_hop``); 0: never split; > 0: split anything
    longer than ``window``. ``hop`` defaults to half the window. The last window is aligned to the
    recording's end so every window has full length (no short tail the model never saw in training)."""
    if window is None:
        if n_samples <= long_seconds * sr:
            return [(0, n_samples)]
        window = default_window
        hop = hop if hop is not None else default_hop
    if window < 0 or (hop is not None and hop <= 0):
        raise ConfigError(f"window ({window}) must be >= 0 and hop ({hop}) > 0 seconds")
    win = int(round(window * sr))
    if win == 0 or n_samples <= win:
        return [(0, n_samples)]
    step = max(1, int(round((hop if hop is not None else window / 2) * sr)))
    starts = list(range(0, n_samples - win + 1, step))
    if starts[-1] + win < n_samples:
        starts.append(n_samples - win)
    return [(s, s + win) for s in starts]


@dataclass
class Features:
    """Model inputs of N utterances: ``pooled[i]`` (N, D_i) per encoder; ``frames[i]`` N arrays
    (T_n, F_i) when the model was trained on frames."""

    pooled: list[torch.Tensor]
    frames: list[list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self.pooled[0].shape[0])

    def batch(self, idx: Sequence[int], extra: list[torch.Tensor] | None = None) -> Any:
        """Rows ``idx`` as a FusionInput (models.collate, as in training); ``extra``: rows appended
        after them (the anchors of batch-dependent models)."""
        return collate(self.pooled, list(idx), self.frames, extra=extra)


class Predictor:
    """Scores audio with an exported bundle. ``heads``: the ensemble members, each a module taking
    a FusionInput of raw (unstandardised) features and returning logits (the training module's
    StandardisedModel). Thread-safe: one lock serialises forward passes (modules are shared)."""

    def __init__(self, labels: Sequence[str], encoders: Sequence[Any], heads: Sequence[torch.nn.Module], *,
                 layer: int | str | None = "last", use_frames: bool = False, legacy_layer: bool = False,
                 batch_dependent: bool = False, anchors: list[torch.Tensor] | None = None,
                 info: dict | None = None, device: str = "cpu", dims: Sequence[str] = ()):
        if not encoders or not heads:
            raise BundleError("a predictor needs at least one encoder and one head")
        self.labels = list(labels)
        # the heads' outputs after the class logits: one per dimension, already in the data's scale
        self.dims = list(dims)
        self.encoders = list(encoders)
        self.heads = [h.eval() for h in heads]
        # Which of an encoder's layers feed the model, exactly as training read the feature store: a
        # layer choice (layer_choice: a hidden-state index, "last", "mean", "weighted"); bundles
        # written before hidden-state indices hold a position instead (``legacy_layer``).
        self.layer = layer if legacy_layer else parse_layer(layer, "bundle inputs.layer", note=False)
        self._legacy_layer = legacy_layer
        self.use_frames = use_frames
        self.batch_dependent = batch_dependent
        if anchors is not None and use_frames:
            raise BundleError("anchors are pooled rows; a frame-based model cannot use them")
        self.anchors = anchors
        self.info = info or {}
        self.device = device
        # Features stored as float16 at training time: round ours the same way so the heads see
        # the values (and the standardiser statistics) they were trained on.
        encs_doc = self.info.get("encoders", [])
        self._half = [i < len(encs_doc) and encs_doc[i].get("store_dtype") == "float16"
                      for i in range(len(self.encoders))]
        # Inputs are decoded once at the first encoder's rate; other encoders resample from it.
        self.sample_rate = int(self.encoders[0].sample_rate)
        self._lock = threading.Lock()

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, model_dir: str | Path, *, device: str = "cpu",
                    checkpoints: dict[str, str] | None = None, encoders: Sequence[Any] | None = None,
                    quiet: bool = False, revision: str | None = None,
                    cache_dir: str | Path | None = None) -> Predictor:
        """Verify the bundle (file hashes), rebuild its encoders (checkpoint sha256, layers and
        preprocessing must match the recorded identity) and its heads. ``model_dir``: a bundle
        folder or a hub repo id (``owner/name``, from the local HF cache first; hub.py), with
        ``revision`` / ``cache_dir`` as in huggingface_hub. ``checkpoints`` maps an encoder name to
        a new location of its checkpoint (moved files; the hash check still applies).
        ``encoders``: prebuilt encoders (also identity-checked)."""
        from parrot_ser.inference.bundle import load_bundle
        from parrot_ser.inference.hub import resolve_model_dir
        from parrot_ser.notices import untrained_models_text

        b = load_bundle(resolve_model_dir(model_dir, revision=revision, cache_dir=cache_dir))
        doc = b.doc
        encs = list(encoders) if encoders is not None else [
            _build_encoder(e, (checkpoints or {}).get(e["name"]), b.root, device) for e in doc["encoders"]]
        if len(encs) != len(doc["encoders"]):
            raise BundleError(f"{b.root}: bundle needs {len(doc['encoders'])} encoder(s), got {len(encs)}")
        for e_doc, enc in zip(doc["encoders"], encs):
            _check_identity(e_doc, enc, b.root)
        md = {**doc["model"], "spec": doc.get("run_spec")}  # the resolved run spec builds the heads
        heads = []
        for m in b.members:
            model = _build_head(md, b.root)
            try:
                model.load_state_dict(m.state_dict, strict=True)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0]
                raise BundleError(f"{b.root / ('members/' + m.tag + '.safetensors')}: weights do not "
                                  f"fit model {md['name']!r} ({first})") from None
            heads.append(model.eval().to(device))
        if b.untrained and not quiet:
            warnings.warn(untrained_models_text(b.untrained), stacklevel=2)
        inputs = doc.get("inputs", {})
        mode = doc.get("inference", {}).get("batch_mode")
        pred = cls(doc["labels"], encs, heads, layer=inputs.get("layer"),
                   legacy_layer=inputs.get("layer_meaning") != LAYER_MEANING,
                   use_frames=bool(inputs.get("use_frames", False)),
                   batch_dependent=bool(md.get("batch_dependent", False)),
                   anchors=b.anchors if mode == "anchors" else None, info=doc, device=device,
                   dims=(md.get("task") or {}).get("dims") or [])
        pred.bundle_root = b.root
        return pred

    # --- Hugging Face conventions (hub.py) --------------------------------------------------------
    bundle_root: Path | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> Predictor:
        """``from_pretrained(folder or "owner/name")``: the same as ``parrot_ser.load_model``."""
        return cls.from_bundle(name_or_path, **kwargs)

    def _root(self) -> Path:
        if self.bundle_root is None:
            raise BundleError("this predictor was not loaded from a bundle; nothing to save or upload")
        return Path(self.bundle_root)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Copy the (verified) bundle this predictor came from to ``save_directory``: the files a
        hub repository holds (hub.hub_files), hashes unchanged; the copy is verified again."""
        import shutil

        from parrot_ser.inference.bundle import verify_bundle
        from parrot_ser.inference.hub import hub_files

        src, dst = self._root(), Path(save_directory)
        if dst.exists() and dst.resolve() == src.resolve():
            return dst
        if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
            raise BundleError(f"{dst}: exists and is not an empty folder; choose a new folder")
        for rel in hub_files(src):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
        verify_bundle(dst)
        return dst

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the bundle to the hub repo ``repo_id`` (huggingface_hub; needs network and a token)."""
        from parrot_ser.inference.hub import push_to_hub

        return push_to_hub(self._root(), repo_id, **kwargs)

    def pipeline(self, x: Any, *, top_k: int | None = None, **kwargs: Any) -> Any:
        """Predictions in the shape of HF's audio-classification pipeline: for one input a list of
        ``{"label", "score"}`` sorted by score (``top_k`` best), for a list of inputs one such list
        each. ``kwargs`` as ``predict`` (``sample_rate`` for waveforms, ``window``, ``hop``)."""
        single = isinstance(x, (str, Path, np.ndarray)) or torch.is_tensor(x)
        preds = self.predict(x, **kwargs)
        out = [p.scores(top_k) for p in preds]
        return out[0] if single else out

    __call__ = pipeline

    @property
    def clip_seconds(self) -> dict | None:
        """Lengths of the clips the model was trained on (bundle ``training.clip_seconds``), if recorded."""
        return (self.info.get("training") or {}).get("clip_seconds") or None

    def window_defaults(self) -> dict[str, float]:
        """``window_spans`` defaults: with recorded clip lengths, recordings longer than the longest
        training clip are cut into windows of the median clip length, hop = window; older bundles
        keep LONG_SECONDS / WINDOW_SECONDS."""
        clips = self.clip_seconds
        if not clips or not clips.get("median"):
            return {}
        med = float(clips["median"])
        return {"long_seconds": max(float(clips.get("max", med)), med), "default_window": med, "default_hop": med}

    @property
    def untrained(self) -> list[str]:
        return [e["name"] for e in self.info.get("encoders", []) if e.get("random_init")]

    @property
    def batch_mode(self) -> str:
        """independent (any batching), anchors (utterance + fixed anchor rows), alone (batch of 1)."""
        if not self.batch_dependent:
            return "independent"
        return "anchors" if self.anchors is not None else "alone"

    # --- features and probabilities ---------------------------------------------------------------
    def layer_positions(self, n_layers: Sequence[int] | None = None) -> list[int | str]:
        """Per encoder, the position of the chosen layer along its output's layer axis (the encoder
        identity's ``layers``; ``n_layers``: the axis lengths, for encoders without an identity)."""
        out = []
        for i, enc in enumerate(self.encoders):
            ident = getattr(enc, "identity", None)
            stored = list(getattr(ident, "layers", None) or range(n_layers[i] if n_layers else 1))
            name = getattr(ident, "name", f"encoder {i}")
            out.append(legacy_position(self.layer, len(stored), f"bundle encoder {name}") if self._legacy_layer
                       else layer_position(self.layer, stored, f"bundle encoder {name}"))
        return out

    def features(self, waves: Sequence[np.ndarray], batch_size: int = 8) -> Features:
        """Model inputs for waveforms at ``sample_rate`` (encoders are padding-invariant, so the
        encoder batch size does not change the numbers beyond float tolerance)."""
        pooled: list[list[np.ndarray]] = [[] for _ in self.encoders]
        frames: list[list[np.ndarray]] = [[] for _ in self.encoders]
        positions: list | None = None
        for i, enc in enumerate(self.encoders):
            sr = int(enc.sample_rate)
            for s in range(0, len(waves), batch_size):
                chunk = [resample(w, self.sample_rate, sr) for w in waves[s:s + batch_size]]
                for eu in enc.encode(chunk, frames=self.use_frames):
                    if positions is None:
                        positions = self.layer_positions([int(eu.pooled.shape[0])] * len(self.encoders))
                    pooled[i].append(select_layer(_stored(eu.pooled, self._half[i]), positions[i]))
                    if self.use_frames:
                        if eu.frames is None:
                            raise BundleError(f"encoder {enc.identity.name!r} returned no frame features")
                        # (L, T, F) -> (T, L, F) so the same layer rule applies on axis 1.
                        fr = np.swapaxes(_stored(eu.frames, self._half[i]), 0, 1)
                        frames[i].append(select_layer(fr, positions[i], axis=1))
        return Features([torch.from_numpy(np.stack(rows)).to(self.device) for rows in pooled],
                        frames if self.use_frames else None)

    @torch.no_grad()
    def probabilities_from_features(self, feats: Features, batch_size: int = 64) -> np.ndarray:
        """(N, C + D): the mean over ensemble members of their softmax probabilities (C labels), then
        of their dimensions (D, the data's scale; none for a classification model). Batch-independent
        models run in chunks; batch-dependent ones one utterance per batch (plus the anchors)."""
        n, k = len(feats), len(self.labels)
        total = torch.zeros(n, k + len(self.dims), dtype=torch.float64)
        for head in self.heads:
            if not self.batch_dependent:
                logits = torch.cat([head(feats.batch(range(s, min(n, s + batch_size))).to(self.device))
                                    for s in range(0, n, batch_size)])
            else:
                logits = torch.cat([head(feats.batch([r], self.anchors).to(self.device))[:1] for r in range(n)])
            out = logits.float()
            if k:
                out = torch.cat([torch.softmax(out[:, :k], dim=-1), out[:, k:]], dim=1)
            total += out.double().cpu()
        return (total / len(self.heads)).numpy()

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        with self._lock:  # encoders/heads are shared between service threads
            return self.probabilities_from_features(self.features(waves, batch_size))

    # --- public API -------------------------------------------------------------------------------
    def predict(self, x: Any, *, sample_rate: int | None = None, window: float | None = None,
                hop: float | None = None, batch_size: int = 8) -> list[Prediction]:
        """``x``: a path, a list of paths, a 1-D waveform or a list of waveforms (then
        ``sample_rate`` is required). One Prediction per input, in order. A bad file raises its
        AudioError (use the CLI, or load files yourself, to skip bad files)."""
        if isinstance(x, (str, Path)):
            x = [x]
        elif isinstance(x, np.ndarray) or torch.is_tensor(x):
            x = [x]
        items = list(x)
        if not items:
            return []
        if all(isinstance(i, (str, Path)) for i in items):
            from parrot_ser.audio import load_audio

            waves = [load_audio(p, self.sample_rate) for p in items]
            names: list[str | None] = [str(p) for p in items]
        elif any(isinstance(i, (str, Path)) for i in items):
            raise ConfigError("pass either paths or waveforms, not a mix")
        else:
            if sample_rate is None:
                raise ConfigError("waveform input needs sample_rate= (samples per second)")
            waves = [resample(check_waveform(torch.as_tensor(w).numpy() if torch.is_tensor(w) else w),
                              int(sample_rate), self.sample_rate) for w in items]
            names = [None] * len(waves)
        return self.predict_waveforms(waves, names, window=window, hop=hop, batch_size=batch_size)

    def predict_waveforms(self, waves: Sequence[np.ndarray], names: Sequence[str | None] | None = None, *,
                          window: float | None = None, hop: float | None = None,
                          batch_size: int = 8) -> list[Prediction]:
        """Waveforms already at ``self.sample_rate``: windows -> probabilities -> Predictions."""
        names = list(names) if names is not None else [None] * len(waves)
        sr = self.sample_rate
        spans_per_wave = [window_spans(len(w), sr, window, hop, **self.window_defaults()) for w in waves]
        segments = [w[s:e] for w, spans in zip(waves, spans_per_wave) for s, e in spans]
        probs = self.probabilities(segments, batch_size) if segments else np.zeros((0, len(self.labels) + len(self.dims)))
        out, k = [], 0
        for name, spans in zip(names, spans_per_wave):
            p = probs[k:k + len(spans)]
            k += len(spans)
            wins = []
            if len(spans) > 1:
                wins = [self._make(row, name, s / sr, e / sr, j) for j, (row, (s, e)) in enumerate(zip(p, spans))]
            out.append(self._make(p.mean(axis=0), name, 0.0, spans[-1][1] / sr, None, wins))
        return out

    def analyze(self, x: Any, *, sample_rate: int | None = None, vad: str = "silero", window: float | None = None,
                hop: float | None = None, smooth: int = 1, batch_size: int = 16) -> Any:
        """Emotion over time (inference/timeline.py): ``x`` a path (decoded in blocks, so any length)
        or a 1-D waveform with ``sample_rate``. Returns a Timeline: speech regions, windows (label,
        probabilities) and merged segments; ``.to_dict()`` for JSON."""
        from parrot_ser.inference.timeline import analyze_blocks, analyze_file
        from parrot_ser.inference.vad import VAD_RATE

        opts = {"vad": vad, "window": window, "hop": hop, "smooth": smooth, "batch_size": batch_size}
        if isinstance(x, (str, Path)):
            return analyze_file(self, x, **opts)
        if sample_rate is None:
            raise ConfigError("waveform input needs sample_rate= (samples per second)")
        wave = check_waveform(torch.as_tensor(x).numpy() if torch.is_tensor(x) else x)
        return analyze_blocks(self, [resample(wave, int(sample_rate), VAD_RATE)], None, **opts)

    def _make(self, row: np.ndarray, name: str | None, start: float, end: float, window: int | None,
              windows: list[Prediction] | None = None) -> Prediction:
        k = len(self.labels)
        probs = {lab: float(v) for lab, v in zip(self.labels, row[:k])}
        dims = {d: float(v) for d, v in zip(self.dims, row[k:])}
        label = self.labels[int(np.argmax(row[:k]))] if k else None
        return Prediction(label, probs, name, start, end, window, windows or [], dims)


def _stored(x: np.ndarray, half: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.astype(np.float16).astype(np.float32) if half else x


def _build_encoder(e: dict, checkpoint: str | None, root: Path, device: str) -> Any:
    from parrot_ser.encoders import build_encoder

    try:
        return build_encoder(e["name"], checkpoint=checkpoint or e.get("checkpoint"), layers=e.get("layers", "last"),
                             random_init=bool(e.get("random_init")), seed=int(e.get("seed") or 0), device=device,
                             **e.get("options", {}))
    except ParrotError as err:
        raise BundleError(f"{root}: cannot rebuild encoder {e['name']!r}: {err}") from None
    except OSError as err:  # e.g. a Hugging Face id that is not in the local cache (no hub access)
        raise BundleError(f"{root}: cannot load checkpoint {checkpoint or e.get('checkpoint')!r} of encoder "
                          f"{e['name']!r} ({str(err).splitlines()[0]}); pass its local path") from None


def _check_identity(e_doc: dict, enc: Any, root: Path) -> None:
    ident = enc.identity.to_dict() if hasattr(enc.identity, "to_dict") else dict(enc.identity)
    name = e_doc["name"]
    if ident.get("checkpoint_sha256") != e_doc.get("checkpoint_sha256"):
        short = lambda h: f"{h[:12]}..." if h else "none"  # noqa: E731
        raise BundleError(
            f"{root}: encoder {name!r} checkpoint {ident.get('checkpoint')} has sha256 "
            f"{short(ident.get('checkpoint_sha256'))}, the bundle was made with "
            f"{short(e_doc.get('checkpoint_sha256'))} (a different checkpoint)")
    for key in ("layers", "preprocessing", "random_init", "seed", "options"):
        if key in e_doc and json_plain(ident.get(key)) != json_plain(e_doc[key]):
            raise BundleError(f"{root}: encoder {name!r} {key} {ident.get(key)!r} differs from the bundle's "
                              f"{e_doc[key]!r}")


def _build_head(md: dict, root: Path) -> torch.nn.Module:
    """The model layer's StandardisedModel (fusion net + standardiser buffers) with the run's
    architecture; load_state_dict then fills weights and statistics."""
    from parrot_ser.models import head_from_run

    try:
        return head_from_run(md)
    except ParrotError as err:
        raise BundleError(f"{root}: cannot rebuild model {md.get('model')!r}: {err}") from None


def load_model(model_dir: str | Path, **kwargs: Any) -> Predictor:
    """``parrot_ser.load_model``: verify the bundle, rebuild encoders and heads -> Predictor."""
    return Predictor.from_bundle(model_dir, **kwargs)


def load_model_quiet(model_dir: str | Path, **kwargs: Any) -> Predictor:
    """Predictor.from_bundle without the Python warning (the CLI prints its own banner)."""
    return Predictor.from_bundle(model_dir, quiet=True, **kwargs)
