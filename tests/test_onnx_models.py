"""Every exportable model (every registered model that is not batch-dependent) exports its head to
ONNX and onnxruntime matches PyTorch, on pooled inputs and, for the models that use them, on frame
inputs; trained briefly with today's defaults (the paper's conv stack: MaxPool1d(2) pooling, whose
training kernel does not trace) on tiny synthetic features, so the whole matrix takes seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from parrot_ser.fusion import MODELS, get_model_spec  # noqa: E402
from parrot_ser.inference.onnx_export import TOLERANCE, EnsembleHead, _export, _session  # noqa: E402
from parrot_ser.training import RunSpec, SERData, TrainConfig, fit_model  # noqa: E402
from parrot_ser.training.data import make_batch  # noqa: E402

EXPORTABLE = sorted(n for n in MODELS if not get_model_spec(n).batch_dependent)


def _data(n_inputs: int, frames: bool, n: int = 24) -> SERData:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    # conv positions 78 and 62 (paper conv stack): more than ot_tokens (64), and no multiple of it
    dims = (320, 256)[:n_inputs]
    pooled = [rng.normal(size=(n, d)).astype(np.float32) + y[:, None] for d in dims]
    fr = None
    if frames:  # ragged frame sequences (5..12 frames) of 16 / 12 features
        fr = [[rng.normal(size=(5 + (i * 7) % 8, w)).astype(np.float32) + y[i] for i in range(n)] for w in (16, 12)]
    return SERData(pooled, y, [f"u{i}" for i in range(n)], ["a", "b", "c"], frames=fr,
                   speakers=[f"s{i % 4}" for i in range(n)])


def _cases():
    for name in EXPORTABLE:
        yield name, False
        if get_model_spec(name).uses_frames:
            yield name, True


@pytest.mark.parametrize("name,frames", list(_cases()))
def test_every_exportable_model_exports(name, frames, tmp_path):
    spec = get_model_spec(name)
    data = _data(spec.n_inputs, frames)
    cfg = RunSpec.build(name, TrainConfig(epochs=1, batch_size=8, use_frames=frames))
    model, _ = fit_model(data.subset(range(16)), None, cfg, seed=0)
    head = EnsembleHead([model], spec.n_inputs, frames).eval()
    batches = [make_batch(data, np.arange(16, 19), use_frames=frames),
               make_batch(data, np.arange(19, 24), use_frames=frames)]  # other batch size, other lengths

    def args(fi):
        return (*fi.pooled, *(fi.frames or []), *(fi.frame_mask or []))

    n = spec.n_inputs
    names = [f"pooled_{i}" for i in range(n)]
    dyn = {k: {0: "batch"} for k in names}
    if frames:
        names += [f"frames_{i}" for i in range(n)] + [f"mask_{i}" for i in range(n)]
        dyn.update({f"frames_{i}": {0: "batch", 1: f"t{i}"} for i in range(n)})
        dyn.update({f"mask_{i}": {0: "batch", 1: f"t{i}"} for i in range(n)})
    path = tmp_path / "head.onnx"
    _export(head, args(batches[0]), path, names, dyn)  # as export_onnx calls it (autograd on)
    sess = _session(path)
    with torch.no_grad():
        for fi in batches:
            ref = head(*args(fi)).numpy()
            got = sess.run(None, {k: v.numpy() for k, v in zip(names, args(fi))})[0]
            assert np.abs(got - ref).max() < TOLERANCE, f"{name} (frames={frames}): {np.abs(got - ref).max():.2e}"


def test_export_formulations_equal_the_training_ones():
    from parrot_ser.fusion.layers import adaptive_avg_pool1d, attend

    x = torch.randn(2, 3, 78)
    for size in (64, 10, 7, 78, 100):
        assert torch.allclose(adaptive_avg_pool1d(x, size), torch.nn.functional.adaptive_avg_pool1d(x, size),
                              atol=1e-6)
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True).eval()
    q, kv = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        ref, _ = mha(q, kv, kv, key_padding_mask=~mask, need_weights=False)
        assert torch.allclose(attend(mha, q, kv, mask), ref, atol=1e-5)
        assert torch.allclose(attend(mha, q, kv, None), mha(q, kv, kv, need_weights=False)[0], atol=1e-5)
