"""``parrot-ser export --onnx``: the bundle's head (and, where the encoders trace cleanly, the whole
audio -> probabilities graph) as ONNX, checked against PyTorch with onnxruntime before it is kept.

MODEL_DIR/onnx/
  head.onnx     inputs ``pooled_<i>`` (batch, D_i) per encoder input (raw, unstandardised features as
                the feature store holds them; (batch, L, D_i) for layer "weighted"); frame models also
                ``frames_<i>`` (batch, T_i, F_i) and ``mask_<i>`` (batch, T_i) bool (True = valid
                frame); output ``probabilities`` (batch, n_labels) = the mean of the ensemble
                members' softmax, as ``Predictor.probabilities``; a model with dimensions (regression,
                multitask) outputs ``outputs`` (batch, n_labels + n_dims) instead: the probabilities,
                then the dimensions in the training data's scale (onnx.json names the columns).
                Dynamic batch (and frame) axes.
  model.onnx    (logmel, Hugging Face, SSAM and CREPE encoders) input ``audio`` (batch, samples) float32 mono at
                16 kHz, one clip per row, all rows the same length (pad nothing: padding changes
                the encoders' features); output ``probabilities``. Dynamic batch and length; Whisper
                clips up to 30 s (one window).
  onnx.json     labels, inputs/outputs, opset, and the parity measured at export (max abs
                difference of the probabilities against PyTorch on two batches of different size
                and length); the files are added to the bundle's sha256 manifest.

Why a graph-friendly front end: ``torch.stft`` returns complex tensors the TorchScript ONNX exporter
cannot carry through ``abs()``; the STFT here is the same windowed DFT as a strided Conv1d (real and
imaginary kernels), which exports to plain Conv and matches torch.stft to float rounding.

SSAM (Mamba) exports too: its selective scan (encoders/mamba/scan.py) is, for speed, a Python loop
of in-place ``addcmul_`` steps into preallocated chunk buffers with ``torch.mul/matmul(out=...)``,
which the exporter cannot carry (no symbolic for the out= variants). While exporting,
``_mamba_export_ops`` swaps in the same recurrence out of place (and the causal conv as one
depthwise Conv1d); tracing unrolls it over the tokens of a chunk, which is right for every input
because every SSAM chunk is exactly 251 tokens (the number of chunks, i.e. the clip length, stays
dynamic). Measured parity 7e-7 on the pooled features.

Not exported (a ParrotError or onnx.json ``not_exported`` says so):
- batch-dependent heads (paper ``parrot``/``ot``): the bundle scores each utterance together with
  fixed anchor rows, one utterance per batch; a plain batched graph would couple the rows instead.
- resemblyzer in model.onnx (NOT_EXPORTED says why); its heads export as head.onnx. (crepe-* exports:
  its window framing is a strided Conv1d with an identity kernel.)
- SSAMBA in model.onnx: its Kaldi fbank framing (``Tensor.unfold`` with snip-edges), the
  target-length pad/cut decided per clip in Python and the within-length flips of the bidirectional
  mixer have no graph form here yet; the scan itself would export as for SSAM. What it would take:
  the fbank as a strided Conv1d like the STFT here, the pad/cut as tensor ops, and ``flip`` for
  equal-length clips. Until then export the head and feed it features from PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.errors import ParrotError
from parrot_ser.layer_choice import select_layer

OPSET = 17
TOLERANCE = 1e-4
ONNX_DIR = "onnx"


class OnnxExportError(ParrotError):
    """A graph that cannot be exported, or an exported graph that does not reproduce PyTorch."""


# --- graph-friendly front ends ---------------------------------------------------------------------
class DFTSpectrogram(torch.nn.Module):
    """|STFT|^2 of (B, N) audio as a Conv1d with cos/sin kernels: centre=True reflect padding, periodic
    Hann window, one-sided bins; returns (B, n_fft // 2 + 1, frames) like ``torch.stft(...).abs()**2``."""

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        ang = 2 * math.pi * k * n / n_fft
        w = window.double()[None, :]
        kern = torch.cat([w * torch.cos(ang), -w * torch.sin(ang)])  # (2K, n_fft)
        self.register_buffer("kernel", kern.float()[:, None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.n_fft // 2
        x = F.pad(x[:, None, :], (p, p), mode="reflect")
        z = F.conv1d(x, self.kernel, stride=self.hop)  # (B, 2K, T)
        re, im = z.chunk(2, dim=1)
        return re * re + im * im


class LogMelGraph(torch.nn.Module):
    """encoders/logmel.py as a graph: pooled (B, 1, 320), frames (B, 1, T, 160)."""

    def __init__(self, enc: Any):
        super().__init__()
        from parrot_ser.encoders import logmel

        self.m = logmel
        self.spec = DFTSpectrogram(logmel.N_FFT, logmel.HOP, torch.hann_window(logmel.N_FFT))
        self.register_buffer("mel", enc.mel.detach().cpu().float())

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.m
        power = self.spec(wave).transpose(1, 2)  # (B, T, freq)
        lm = torch.log(power @ self.mel + m.LOG_FLOOR)  # (B, T, 80)
        n = m.DELTA_N
        t = lm.shape[1]
        padded = torch.cat([lm[:, :1].expand(-1, n, -1), lm, lm[:, -1:].expand(-1, n, -1)], dim=1)
        num = sum(k * (padded[:, n + k: n + k + t] - padded[:, n - k: n - k + t]) for k in range(1, n + 1))
        f = torch.cat([lm, num / (2 * sum(k * k for k in range(1, n + 1)))], dim=2)  # (B, T, 160)
        mean = f.mean(1)
        std = ((f - mean[:, None]) ** 2).mean(1).sqrt()  # population std, as std(unbiased=False)
        return torch.cat([mean, std], dim=1)[:, None], f[:, None]


class HFGraph(torch.nn.Module):
    """A wav2vec 2.0-family encoder of encoders/hf.py on equal-length clips (no padding, no mask):
    the feature extractor's normalisation, then the chosen hidden states; pooled = mean over frames.
    Returns pooled (B, L, D), frames (B, L, T, D)."""

    def __init__(self, enc: Any):
        super().__init__()
        self.model = enc.model
        self.layers = list(enc.identity.layers)
        self.normalize = bool(getattr(enc.fe, "do_normalize", False))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wave
        if self.normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            mu = x.mean(1, keepdim=True)
            x = (x - mu) / torch.sqrt(((x - mu) ** 2).mean(1, keepdim=True) + 1e-7)
        hs = self.model(input_values=x, output_hidden_states=True, return_dict=True).hidden_states
        fr = torch.stack([hs[j] for j in self.layers], dim=1)  # (B, L, T, D)
        return fr.mean(2), fr


class CrepeGraph(torch.nn.Module):
    """encoders/crepe.py as a graph: the 1024-sample windows every hop cut by a strided Conv1d with an
    identity kernel (``Tensor.unfold`` has no ONNX form here), each window mean-centred and scaled by
    its (unbiased) std, the conv stack, pooled = mean over windows. Pooled (B, L, D), frames (B, L, T, D)."""

    def __init__(self, enc: Any):
        super().__init__()
        from parrot_ser.encoders import crepe

        self.net, self.layers, self.hop, self.window = enc.model, list(enc.layers), int(enc.hop), crepe.WINDOW
        self.register_buffer("eye", torch.eye(self.window).unsqueeze(1))  # (1024, 1, 1024)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = wave.shape[0]
        x = F.pad(wave[:, None], (self.window // 2, self.window // 2))
        win = F.conv1d(x, self.eye, stride=self.hop).transpose(1, 2)  # (B, 1 + N // hop, 1024)
        n = win.shape[1]
        win = win - win.mean(-1, keepdim=True)
        win = win / win.std(-1, keepdim=True).clamp_min(1e-10)
        outs = self.net(win.reshape(b * n, self.window))
        fr = torch.stack([outs[k].reshape(b, n, -1) for k in self.layers], dim=1)  # (B, L, T, D)
        return fr.mean(2), fr


class WhisperGraph(torch.nn.Module):
    """Whisper (encoders/hf.py) for clips up to 30 s: zero-pad to 30 s, the feature extractor's
    log-mel (WhisperFeatureExtractor._torch_extract_fbank_features), the encoder, frames trimmed to
    ceil(samples / 320)."""

    def __init__(self, enc: Any):
        super().__init__()
        from parrot_ser.encoders.hf import WHISPER_HOP, WHISPER_WINDOW

        fe = enc.fe
        self.model = enc.model
        self.layers = list(enc.identity.layers)
        self.window, self.frame_hop = WHISPER_WINDOW, WHISPER_HOP
        self.spec = DFTSpectrogram(fe.n_fft, fe.hop_length, torch.hann_window(fe.n_fft))
        self.register_buffer("mel", torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32)))  # (freq, mels)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = wave.shape[1]
        x = torch.cat([wave, wave.new_zeros(wave.shape[0], self.window - n)], dim=1)
        mag = self.spec(x)[..., :-1]  # (B, freq, 3000)
        log_spec = torch.clamp(self.mel.T @ mag, min=1e-10).log10()
        top = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = (torch.maximum(log_spec, top - 8.0) + 4.0) / 4.0
        hs = self.model(input_features=log_spec, output_hidden_states=True, return_dict=True).hidden_states
        t = (n + self.frame_hop - 1) // self.frame_hop
        fr = torch.stack([hs[j][:, :t] for j in self.layers], dim=1)
        return fr.mean(2), fr


def _scan_loop(dA: torch.Tensor, dBu: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """h_t = dA_t * h_{t-1} + dBu_t, y_t = C_t h_t over the time axis 1 of (B, L, N, Di). Traced, so
    the loop is unrolled for the token count of the example: right for SSAM, whose every 2 s chunk
    is exactly 251 tokens whatever the clip length (the batch of chunks stays dynamic). A scripted
    loop (one ONNX Loop, any length) also exports, but onnxruntime ran it ~20x slower (measured:
    the export-time check of a depth-2 ssam-tiny bundle took 40 s with the Loop, 1.9 s unrolled),
    every step going through a sequence insert."""
    h = torch.zeros_like(dBu[:, 0])
    ys: list[torch.Tensor] = []
    for t in range(int(dA.shape[1])):
        h = dA[:, t] * h + dBu[:, t]
        ys.append(torch.matmul(C[:, t].unsqueeze(1), h).squeeze(1))
    return torch.stack(ys, 1)


def _scan_for_export(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                     D: torch.Tensor | None, *, chunk: int = 0) -> torch.Tensor:
    """The recurrence of encoders/mamba/scan.py, out of place (no out= buffers), for export only:
    it materialises (B, L, N, Di) tensors, which the chunked CPU scan avoids."""
    u, delta = u.float(), delta.float()
    dA = torch.exp(delta.unsqueeze(-1) * A.float()).transpose(2, 3)  # (B, L, N, Di)
    dBu = (delta * u).unsqueeze(2) * Bm.float().unsqueeze(-1)
    y = _scan_loop(dA, dBu, Cm.float())
    return y if D is None else y + u * D.float()


def _conv_for_export(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """causal_conv1d_silu as one depthwise Conv1d (the CPU path's in-place shifted FMAs do not export)."""
    y = F.conv1d(x.transpose(1, 2), weight, bias, padding=weight.shape[-1] - 1, groups=weight.shape[0])
    return F.silu(y[..., : x.shape[1]].transpose(1, 2))


@contextlib.contextmanager
def _mamba_export_ops():
    """Swap the mixer's scan and conv for their export forms while tracing (restored after)."""
    import parrot_ser.encoders.mamba.mixer as mixer

    old = mixer.selective_scan, mixer.causal_conv1d_silu
    mixer.selective_scan, mixer.causal_conv1d_silu = _scan_for_export, _conv_for_export
    try:
        yield
    finally:
        mixer.selective_scan, mixer.causal_conv1d_silu = old


class SSAMGraph(torch.nn.Module):
    """encoders/ssam.py as a graph: the log-mel of preprocessing.ssam_logmel (DFT conv, HTK filters,
    log(x + eps), per-clip mean / unbiased std), zero-padding to whole 200-frame chunks (a full extra
    chunk when already whole, as the official code), every chunk through the model, regrouped frames,
    the padded tail trimmed with the official int(50 * pad / 200). Returns pooled (B, L, 5D) and
    frames (B, L, T, 5D). Export it under ``_mamba_export_ops()``."""

    def __init__(self, enc: Any):
        super().__init__()
        from parrot_ser.encoders.mamba.preprocessing import SSAM_MEL, mel_filterbank_htk

        c = SSAM_MEL
        self.model, self.layers, self.corrected = enc.model, list(enc.layers), bool(enc.corrected_grouping)
        self.spec = DFTSpectrogram(c["n_fft"], c["hop_length"], torch.hann_window(c["win_length"], periodic=True))
        fb = mel_filterbank_htk(c["n_fft"] // 2 + 1, c["f_min"], c["f_max"], c["n_mels"], c["sample_rate"])
        self.register_buffer("fb", fb.T.contiguous())  # (mels, freq)
        self.eps = float(c["log_eps"])

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from parrot_ser.encoders.mamba.ssam_net import CHUNK_FRAMES, GRID, regroup_frames

        b = wave.shape[0]
        x = torch.log(self.fb @ self.spec(wave) + self.eps)  # (B, 80, T)
        mu = x.mean(dim=(1, 2), keepdim=True)
        sd = torch.sqrt(((x - mu) ** 2).sum(dim=(1, 2), keepdim=True) / (x.shape[1] * x.shape[2] - 1))
        x = ((x - mu) / (sd + 1e-8)).transpose(1, 2)  # (B, T, 80)
        t = x.shape[1]
        pad = CHUNK_FRAMES - t % CHUNK_FRAMES
        x = torch.cat([x, x.new_zeros(b, pad, x.shape[2])], dim=1)
        r = (t + pad) // CHUNK_FRAMES
        out = self.model(x.reshape(b * r, 1, CHUNK_FRAMES, x.shape[2]).to(self.model.patch_embed.proj.weight.dtype),
                         self.layers)
        gt = GRID[0]
        n = r * gt - (gt * pad) // CHUNK_FRAMES
        fr = torch.stack([regroup_frames(out[k].float(), self.corrected).reshape(b, r * gt, -1)
                          for k in self.layers], dim=1)[:, :, :n]
        return fr.mean(2), fr


EXPORTABLE = ("logmel", "hf", "ssam", "crepe")
# Families with no audio graph yet, and why (onnx.json "not_exported" and the error say it).
NOT_EXPORTED = {
    "resemblyzer": "its speaker-embedding layer runs 1.6 s partial windows whose number and padding are "
                   "decided per clip in Python (embed_utterance), and its volume normalisation branches on "
                   "the clip's level",
}


def not_exportable_reason(enc: Any) -> str | None:
    """Why ``enc`` has no audio graph here (None: it has one)."""
    try:
        front_end(enc)
    except OnnxExportError as e:
        return str(e)
    return None


def front_end(enc: Any) -> torch.nn.Module:
    fam = enc.spec.family
    if fam == "logmel":
        return LogMelGraph(enc)
    if fam == "hf":
        if getattr(enc, "is_whisper", False) and getattr(enc, "window", "30s") != "30s":
            raise OnnxExportError(
                f"encoder {enc.spec.name!r} with window={enc.window} (the default) cuts Whisper's positional "
                "table to each clip's length; the ONNX graph here is the official fixed 30 s window: export a "
                f"bundle whose features used --option {enc.spec.name}:window=30s, or use onnx/head.onnx")
        return WhisperGraph(enc) if getattr(enc, "is_whisper", False) else HFGraph(enc)
    if fam == "ssam":
        return SSAMGraph(enc)
    if fam == "crepe":
        return CrepeGraph(enc)
    if fam in NOT_EXPORTED:
        raise OnnxExportError(f"encoder {enc.spec.name!r} ({fam}) is not exported to ONNX: {NOT_EXPORTED[fam]}; "
                              "use onnx/head.onnx with features from PyTorch")
    raise OnnxExportError(
        f"encoder {enc.spec.name!r} ({fam}) is not exported to ONNX: SSAMBA's Kaldi fbank framing "
        "(Tensor.unfold), its target-length pad/cut and the within-length flips of the bidirectional mixer "
        "have no graph form here yet (docs/inference.md); use onnx/head.onnx with features from PyTorch")


class PooledGraph(torch.nn.Module):
    """audio (B, N) -> an encoder's pooled features (B, L, P): the front end alone (tests, and for
    feeding head.onnx from ONNX)."""

    def __init__(self, enc: Any):
        super().__init__()
        self.front = front_end(enc)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front(audio)[0]


def export_encoder(enc: Any, path: str | Path, example: np.ndarray) -> Path:
    """Write ``enc``'s pooled-feature graph (PooledGraph) as ONNX; input ``audio``, output ``pooled``."""
    x = torch.from_numpy(np.asarray(example, dtype=np.float32))[None]
    with torch.no_grad(), _mamba_export_ops():
        _export(PooledGraph(enc).eval(), (x,), Path(path), ["audio"], {"audio": {0: "batch", 1: "samples"}},
                output="pooled")
    return Path(path)


# --- the graphs -------------------------------------------------------------------------------------
class EnsembleHead(torch.nn.Module):
    """Mean softmax of the members (StandardisedModel each) on raw features; for a model with
    dimensions, the members' mean dimensions (the data's scale) follow the probabilities, as in
    ``Predictor.probabilities_from_features``."""

    def __init__(self, heads: list[torch.nn.Module], n_inputs: int, use_frames: bool, n_labels: int | None = None):
        super().__init__()
        self.heads = torch.nn.ModuleList(heads)
        self.n, self.use_frames = n_inputs, use_frames
        self.k = n_labels  # None: every output is a class logit

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        from parrot_ser.fusion.base import FusionInput

        n = self.n
        fi = FusionInput(list(xs[:n]), list(xs[n:2 * n]) if self.use_frames else None,
                         list(xs[2 * n:3 * n]) if self.use_frames else None)
        k = self.k
        if k is None:
            return torch.stack([torch.softmax(h(fi).float(), dim=-1) for h in self.heads]).mean(0)
        outs = [h(fi).float() for h in self.heads]
        outs = [torch.cat([torch.softmax(o[:, :k], dim=-1), o[:, k:]], dim=1) if k else o for o in outs]
        return torch.stack(outs).mean(0)


class AudioGraph(torch.nn.Module):
    """audio (B, N) -> encoder front ends -> the bundle's layer rule (and float16 rounding of a
    float16 feature store) -> EnsembleHead."""

    def __init__(self, fronts: list[torch.nn.Module], head: EnsembleHead, positions: list[Any], half: list[bool]):
        super().__init__()
        self.fronts = torch.nn.ModuleList(fronts)
        self.head, self.positions, self.half = head, positions, half  # Predictor.layer_positions()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pooled, frames, masks = [], [], []
        for fe, half, pos in zip(self.fronts, self.half, self.positions):
            p, fr = fe(audio)
            if half:
                p, fr = p.half().float(), fr.half().float()
            pooled.append(select_layer(p, pos, axis=1))  # (B, L, P): the predictor's selector
            if self.head.use_frames:
                f = select_layer(fr.transpose(1, 2), pos, axis=2)  # (B, T, L, F), as the predictor
                frames.append(f)
                masks.append(torch.ones(f.shape[:2], dtype=torch.bool))
        return self.head(*pooled, *frames, *masks)


# --- export -----------------------------------------------------------------------------------------
def _export(module: torch.nn.Module, args: tuple, path: Path, names: list[str], dynamic: dict,
            output: str = "probabilities") -> None:
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript and torch.export-clean models (HF audio models are not, today)
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=[output],
                          dynamic_axes={**dynamic, output: {0: "batch"}}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the checks are tiny; threads only contend on shared machines
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _test_waves(sr: int) -> list[list[np.ndarray]]:
    """Two batches of different size and length: a graph with a shape frozen at tracing fails one."""
    rng = np.random.default_rng(0)
    t1, t2 = np.arange(int(1.3 * sr)) / sr, np.arange(int(2.1 * sr)) / sr
    tone = lambda t, f: (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)  # noqa: E731
    return [[tone(t1, 220.0), tone(t1, 330.0)], [tone(t2, 150.0), tone(t2, 440.0), tone(t2, 260.0)]]


def export_onnx(model_dir: str | Path, *, full: bool | None = None) -> dict:
    """Write MODEL_DIR/onnx/ (module doc) for a verified bundle and add it to the bundle's manifest.
    ``full``: also the audio graph (None: when every encoder supports it). Returns onnx.json."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxExportError("ONNX export needs onnx and onnxruntime: pip install 'parrot-ser[onnx]'") from None
    from parrot_ser.inference.bundle import add_files
    from parrot_ser.inference.predictor import load_model_quiet

    root = Path(model_dir)
    pred = load_model_quiet(root)
    if pred.batch_dependent:
        raise OnnxExportError(
            f"{root}: model {pred.info['model']['name']!r} is batch-dependent (OT across the rows of a batch); the "
            "bundle scores each utterance with fixed anchors, which a batched ONNX graph would not reproduce; "
            "export a batch-independent model (e.g. parrot-token)")
    n = len(pred.encoders)
    use_frames = pred.use_frames
    head = EnsembleHead(pred.heads, n, use_frames, len(pred.labels) if pred.dims else None).eval()
    what = ("probabilities (batch, n_labels)" if not pred.dims else
            f"outputs (batch, {len(pred.labels) + len(pred.dims)}): "
            + (f"probabilities of {', '.join(pred.labels)}, then " if pred.labels else "")
            + f"{', '.join(pred.dims)} in the training data's scale")
    output_name = "outputs" if pred.dims else "probabilities"
    out = root / ONNX_DIR
    out.mkdir(exist_ok=True)
    waves = _test_waves(pred.sample_rate)
    feats = [pred.features(b) for b in waves]
    ref = [pred.probabilities_from_features(f).astype(np.float32) for f in feats]

    def head_args(f: Any) -> tuple:
        fi = f.batch(range(len(f)))
        return (*fi.pooled, *(fi.frames or []), *(fi.frame_mask or []))

    names = [f"pooled_{i}" for i in range(n)]
    dyn: dict = {k: {0: "batch"} for k in names}
    if use_frames:
        names += [f"frames_{i}" for i in range(n)] + [f"mask_{i}" for i in range(n)]
        dyn.update({f"frames_{i}": {0: "batch", 1: f"frames_{i}"} for i in range(n)})
        dyn.update({f"mask_{i}": {0: "batch", 1: f"frames_{i}"} for i in range(n)})
    report: dict[str, Any] = {"labels": pred.labels, "dims": pred.dims, "opset": OPSET, "tolerance": TOLERANCE,
                              "sample_rate": pred.sample_rate, "files": {}}
    head_path = out / "head.onnx"
    try:
        _export(head, head_args(feats[0]), head_path, names, dyn, output_name)
    except Exception as e:  # exporter errors are long; one line for the user
        raise OnnxExportError(f"{root}: head {pred.info['model']['name']!r} does not export to ONNX "
                              f"({str(e).strip().splitlines()[0][:200]})") from None
    sess = _session(head_path)
    diffs = []
    for f, r in zip(feats, ref):
        got = sess.run(None, {k: v.numpy() for k, v in zip(names, head_args(f))})[0]
        diffs.append(float(np.abs(got - r).max()))
    _check(head_path, max(diffs))
    report["files"]["head.onnx"] = {"inputs": names, "output": what,
                                    "max_abs_diff_vs_torch": max(diffs)}
    reasons = {e.spec.name: r for e in pred.encoders if (r := not_exportable_reason(e)) is not None}
    supported = not reasons
    if full or (full is None and supported):
        fronts = [front_end(e).eval() for e in pred.encoders]
        graph = AudioGraph(fronts, head, pred.layer_positions(), list(pred._half)).eval()
        path = out / "model.onnx"
        x0 = torch.from_numpy(np.stack(waves[0]))
        try:
            with torch.no_grad(), _mamba_export_ops():
                _export(graph, (x0,), path, ["audio"], {"audio": {0: "batch", 1: "samples"}}, output_name)
        except Exception as e:
            raise OnnxExportError(f"{root}: the audio graph does not export to ONNX "
                                  f"({str(e).strip().splitlines()[0][:200]}); head.onnx was written") from None
        sess = _session(path)
        diffs = [float(np.abs(sess.run(None, {"audio": np.stack(b)})[0] - r).max()) for b, r in zip(waves, ref)]
        _check(path, max(diffs))
        report["files"]["model.onnx"] = {"inputs": ["audio (batch, samples) float32, 16 kHz, equal lengths"],
                                         "output": what, "max_abs_diff_vs_torch": max(diffs)}
    elif not supported:
        report["not_exported"] = {"model.onnx": "; ".join(reasons.values())}
    (out / "onnx.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    add_files(root, [f"{ONNX_DIR}/{f}" for f in (*report["files"], "onnx.json")])
    return report


def _check(path: Path, diff: float) -> None:
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"{path}: onnxruntime differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}); "
                              "not kept")
