"""Our pure-PyTorch Mamba mixer / selective scan vs transformers' MambaMixer slow path (the path it
takes without the CUDA kernels), at SSAM-base shapes: d_model 768, d_state 24, d_conv 4, expand 3,
L = 251 tokens (cls + 250 patches), batch 8. Same weights in both (parameters copied across); the
outputs are compared before timing. The in/out projections are the same matmuls in both, so the
scan-only comparison and the projection time are reported separately. Also: our achieved GFLOP/s
against this machine's dense matmul throughput, and SSAM-base end-to-end encoding speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
import torch

from common import best_time, log, matmul_gflops, record
from parrot_ser.encoders.mamba.mixer import MambaMixer
from parrot_ser.encoders.mamba.scan import selective_scan_torch

D_MODEL, D_STATE, D_CONV, EXPAND, L = 768, 24, 4, 3, 251


def _mixers(seed: int = 0):
    import transformers.utils.logging as hf_logging
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer as HFMixer

    hf_logging.set_verbosity_error()  # "falling back to the PyTorch implementation" is the point here
    torch.manual_seed(seed)
    ours = MambaMixer(D_MODEL, D_STATE, D_CONV, EXPAND).eval()
    with torch.no_grad():  # trained-like A (mamba_ssm init plus noise), random projections
        ours.A_log.add_(torch.randn_like(ours.A_log) * 0.3)
    cfg = MambaConfig(hidden_size=D_MODEL, state_size=D_STATE, conv_kernel=D_CONV, expand=EXPAND,
                      time_step_rank=ours.dt_rank, use_bias=False, use_conv_bias=True)
    hf = HFMixer(cfg, 0).eval()
    hf.load_state_dict(ours.state_dict())
    return ours, hf


def interleaved_best(fa, fb, repeats: int) -> tuple[float, float]:
    """Best times of two functions run alternately (after one warm-up each): on a shared machine whose
    load drifts, both sides then see the same conditions."""
    fa(), fb()
    ta = tb = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fa()
        t1 = time.perf_counter()
        fb()
        t2 = time.perf_counter()
        ta, tb = min(ta, t1 - t0), min(tb, t2 - t1)
    return ta, tb


def mixer_flops(b: int) -> float:
    di, r, n = EXPAND * D_MODEL, math.ceil(D_MODEL / 16), D_STATE
    tok = b * L
    matmuls = 2 * tok * (D_MODEL * 2 * di + di * D_MODEL + di * (r + 2 * n) + r * di)
    conv = 2 * tok * di * D_CONV
    scan = 7 * tok * di * n  # exp arg, exp, dB*u, state FMA (2), C contraction (2)
    return float(matmuls + conv + scan)


def run(quick: bool = False) -> Iterable[dict]:
    b = 2 if quick else 8
    repeats = 1 if quick else 5
    ours, hf = _mixers()
    x = torch.randn(b, L, D_MODEL)
    with torch.inference_mode():
        diff = float((ours(x) - hf(x)).abs().max())
        scale = float(hf(x).abs().max())
        log(f"threads {torch.get_num_threads()}; max |ours - transformers| = {diff:.2e} (output max {scale:.2f})")
        yield record("mixer max abs diff vs transformers", diff, "abs")

        t_ours, t_hf = interleaved_best(lambda: ours(x), lambda: hf(x), repeats)
        t_proj = best_time(lambda: ours.out_proj(ours.in_proj(x)[..., :ours.d_inner]), repeats=repeats)
        log(f"mixer (B={b}, L={L}): ours {t_ours * 1e3:.0f} ms, transformers slow path {t_hf * 1e3:.0f} ms, "
            f"x{t_hf / t_ours:.2f}; shared in/out projections {t_proj * 1e3:.0f} ms")
        yield record(f"mixer forward B={b} L={L} SSAM-base", t_ours * 1e3, "ms",
                     baseline="transformers MambaMixer slow path", baseline_value=t_hf * 1e3)
        yield record("in_proj+out_proj matmuls (shared by both)", t_proj * 1e3, "ms")

        # Scan alone: identical inputs to both implementations.
        from transformers.models.mamba.modeling_mamba import mamba_selective_scan

        di, n = ours.d_inner, D_STATE
        g = torch.Generator().manual_seed(1)
        u = torch.randn(b, L, di, generator=g)
        delta = torch.nn.functional.softplus(torch.randn(b, L, di, generator=g) - 3)
        A = -torch.exp(ours.A_log.float())
        Bm, Cm = torch.randn(b, L, n, generator=g), torch.randn(b, L, n, generator=g)
        Dv = ours.D.float()
        y_hf = mamba_selective_scan(u.transpose(1, 2), delta.transpose(1, 2), A, Bm.transpose(1, 2),
                                    Cm.transpose(1, 2), D=Dv).transpose(1, 2)
        sdiff = float((selective_scan_torch(u, delta, A, Bm, Cm, Dv) - y_hf).abs().max())
        ts_ours, ts_hf = interleaved_best(
            lambda: selective_scan_torch(u, delta, A, Bm, Cm, Dv),
            lambda: mamba_selective_scan(u.transpose(1, 2), delta.transpose(1, 2), A, Bm.transpose(1, 2),
                                         Cm.transpose(1, 2), D=Dv), repeats)
        log(f"scan only: ours {ts_ours * 1e3:.0f} ms, transformers {ts_hf * 1e3:.0f} ms, x{ts_hf / ts_ours:.2f} "
            f"(max diff {sdiff:.1e})")
        yield record(f"selective scan B={b} L={L} Di={di} N={n}", ts_ours * 1e3, "ms",
                     baseline="transformers mamba_selective_scan (sequential)", baseline_value=ts_hf * 1e3)

        peak = matmul_gflops()
        achieved = mixer_flops(b) / t_ours / 1e9
        log(f"mixer achieved {achieved:.1f} GFLOP/s; dense matmul on this machine {peak:.1f} GFLOP/s")
        yield record("mixer achieved GFLOP/s", achieved, "GFLOP/s", baseline="dense fp32 matmul GFLOP/s",
                     baseline_value=peak, ratio=achieved / peak)

    if not quick:  # end to end: SSAM-base (random init, 12 blocks) on 8 utterances of 2 s
        from parrot_ser.encoders import ssam

        spec = {s.name: s for s in ssam.specs()}["ssam-base"]
        enc = ssam.build(spec, checkpoint=None, random_init=True, batch_chunks=16)
        rng = np.random.default_rng(0)
        waves = [(0.1 * rng.standard_normal(32000)).astype(np.float32) for _ in range(8)]
        t = best_time(lambda: enc.encode(waves), repeats=1, warmup=1)
        log(f"SSAM-base end to end: 8 x 2 s in {t:.2f} s (real-time factor {t / 16:.3f})")
        yield record("SSAM-base encode 8 x 2 s (16 chunks, 12 blocks)", t, "s")
