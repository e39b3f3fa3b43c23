"""GGUF K-quants written in numpy: Q4_K and Q6_K bytes in ggml's block layout (ggml-common.h), for the GGUF
files the zoo benchmark and the tests write. `gguf` only reads K-quants; llama.cpp's C code writes them.

A row is cut into super-blocks of 256 values (`QK_K`), each stored as one block:

- Q4_K, 144 bytes, 4.5 bits a weight: fp16 d, fp16 dmin, 12 bytes packing eight 6-bit scales and eight
  6-bit mins (one per sub-block of 32), 128 bytes of 4-bit quants. A value is d·scale·q - dmin·min.
- Q6_K, 210 bytes, 6.5625 bits a weight: 128 bytes of low 4 bits, 64 bytes of high 2 bits, sixteen int8
  scales (one per sub-block of 16), fp16 d. A value is d·scale·(q - 32).

The recipe is llama.cpp's in outline (its quantize_row_q4_K_ref and quantize_row_q6_K_ref without an
importance matrix), written here afresh, vectorised over all sub-blocks at once:

- Q4_K sub-block: a short search over 21 step sizes around (max - min)/15; for each, the 4-bit codes, then
  the scale and min (min <= 0) that fit the codes best by weighted least squares, weights |x| + RMS of the
  sub-block (large weights count more); the candidate with the least weighted error wins.
- Q6_K sub-block: a short search over 19 step sizes around the signed largest value / -32; for each, the
  6-bit codes and the scale that fits them by least squares weighted by x²; the best fit wins.
- Super-block: the sub-block scales (and Q4_K mins) are themselves quantised against the block's largest
  (6-bit unsigned for Q4_K, int8 for Q6_K), and the codes are then chosen again against the scales as
  stored, so rounding the scales costs as little as it can.
"""

from __future__ import annotations

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

QK_K = 256
"""Values in a K-quant super-block (ggml's QK_K): a row must be a whole number of them."""
Q4_K_SUB, Q6_K_SUB = 32, 16
"""Values sharing one sub-block scale."""
Q4_K_TOP = 15
"""Largest 4-bit code (codes 0..15, min subtracted)."""
Q6_K_HALF = 32
"""6-bit codes are stored as q + 32 (signed -32..31)."""
SIX_BIT_TOP = 63
"""Largest 6-bit Q4_K sub-block scale or min."""
INT8_SPAN = 128
"""Q6_K sub-block scales are int8: the block's largest maps to -128."""
INT8_TOP = 127
Q4_K_SEARCH = np.linspace(-1.0, 1.0, 21)
"""Offsets to the number of steps (15) spanned by a sub-block's range, as llama.cpp searches them."""
Q6_K_SEARCH = np.linspace(-0.9, 0.9, 19)
"""Offsets to the 32 steps of a sub-block's largest magnitude, as llama.cpp searches them."""
K_QUANT_FALLBACK = {Q.Q4_K: Q.Q5_0, Q.Q6_K: Q.Q8_0}
"""What llama.cpp's quantiser writes instead when a row is not a whole number of super-blocks
(llama-quant.cpp, "using fallback quantization"; F16 if the row does not fill the fallback's blocks)."""
Q6_K_LOW_SPAN = 64
"""ql byte i of each 128-value half of a Q6_K block holds values i (low nibble) and i + 64 (high nibble)."""
Q6_K_HIGH_SPAN = 32
"""qh byte i of each half holds the top two bits of values i, i + 32, i + 64, i + 96 (bits 0-1 ... 6-7)."""
NIBBLE = 0x0F
LOW_TWO_BITS = 0x03


def fp16(values: np.ndarray) -> np.ndarray:
    """`values` as the fp16 ggml stores, back in float64 so that codes are chosen against what is stored."""
    return values.astype(np.float16).astype(np.float64)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (an all-zero sub-block or super-block)."""
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def super_blocks(weights: np.ndarray) -> np.ndarray:
    """A matrix's rows cut into super-blocks: (rows · cols/256, 256), float64, in file order."""
    if weights.shape[-1] % QK_K:
        raise ValueError(f"rows of {weights.shape[-1]} values are not a whole number of {QK_K}-value super-blocks")
    return weights.astype(np.float64).reshape(-1, QK_K)


def fit_affine(x: np.ndarray, weight: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale and min (min <= 0) of x ≈ scale·codes + min by weighted least squares, and the weighted error;
    over the last axis. Where the fitted min is above 0 (Q4_K stores -min unsigned) or the codes are all
    equal (a constant sub-block: the two cannot both be fitted), the min is 0 and the scale alone is fitted,
    unless the codes are all 0, when the min alone carries the (negative) constant."""
    sw, sl, sll = (np.sum(weight * codes**k, -1) for k in (0, 1, 2))
    sx, sxl = np.sum(weight * x, -1), np.sum(weight * x * codes, -1)
    determinant = sw * sll - sl * sl
    scale = ratio(sw * sxl - sx * sl, determinant)
    low = ratio(sll * sx - sl * sxl, determinant)
    scale_only = (np.ptp(codes, -1) == 0) | (low > 0)
    scale = np.maximum(np.where(scale_only, ratio(sxl, sll), scale), 0.0)
    low = np.where(scale_only, np.where(sll == 0, np.minimum(ratio(sx, sw), 0.0), 0.0), low)
    error = np.sum(weight * (scale[..., None] * codes + low[..., None] - x) ** 2, -1)
    return scale, low, error


def q4_k_sub_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best (scale, min) of each 32-value sub-block of `x` (..., 32) by the searched least-squares fit."""
    weight = np.sqrt(np.mean(x * x, -1, keepdims=True)) + np.abs(x)
    low = np.minimum(x.min(-1), 0.0)[..., None]
    span = x.max(-1)[..., None] - low
    steps = (Q4_K_TOP + Q4_K_SEARCH)[:, None]  # (candidates, 1) against (..., 1, 32)
    codes = np.clip(np.rint(ratio(steps, span[..., None, :]) * (x - low)[..., None, :]), 0, Q4_K_TOP)
    scale, offset, error = fit_affine(x[..., None, :], weight[..., None, :], codes)
    best = np.argmin(error, -1)[..., None]
    return np.take_along_axis(scale, best, -1)[..., 0], np.take_along_axis(offset, best, -1)[..., 0]


def pack_q4_k_scales(scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins per block in ggml's 12 bytes: bytes 0-3 scales 0-3, bytes 4-7 mins 0-3
    (their top two bits carry bits 4-5 of scales/mins 4-7), bytes 8-11 the low nibbles of scales/mins 4-7."""
    head, tail = scales[:, :4], scales[:, 4:]
    mins_head, mins_tail = mins[:, :4], mins[:, 4:]
    return np.concatenate(
        [head | ((tail >> 4) << 6), mins_head | ((mins_tail >> 4) << 6), (tail & NIBBLE) | ((mins_tail & NIBBLE) << 4)],
        axis=-1,
    ).astype(np.uint8)


def quantize_q4_k(weights: np.ndarray) -> np.ndarray:
    """A (rows, cols) float matrix, cols a multiple of 256, as Q4_K bytes (rows, cols/256·144)."""
    blocks = super_blocks(weights)
    x = blocks.reshape(len(blocks), QK_K // Q4_K_SUB, Q4_K_SUB)
    scale, low = q4_k_sub_blocks(x)
    d = fp16(scale.max(-1) / SIX_BIT_TOP)[:, None]
    dmin = fp16(-low.min(-1) / SIX_BIT_TOP)[:, None]
    scales = np.clip(np.rint(ratio(scale, d)), 0, SIX_BIT_TOP).astype(np.uint8)
    mins = np.clip(np.rint(ratio(-low, dmin)), 0, SIX_BIT_TOP).astype(np.uint8)
    step, offset = (d * scales)[..., None], (dmin * mins)[..., None]
    codes = np.clip(np.rint(ratio(x + offset, step)), 0, Q4_K_TOP).astype(np.uint8)
    pairs = codes.reshape(len(blocks), QK_K // (2 * Q4_K_SUB), 2, Q4_K_SUB)  # sub-blocks 2j, 2j+1 share bytes
    quants = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(len(blocks), -1)
    packed = np.concatenate(
        [as_bytes(d), as_bytes(dmin), pack_q4_k_scales(scales, mins), quants], axis=-1, dtype=np.uint8
    )
    return packed.reshape(weights.shape[0], -1)


def as_bytes(scale: np.ndarray) -> np.ndarray:
    """(blocks, 1) scales as their fp16 bytes, (blocks, 2)."""
    return scale.astype(np.float16).view(np.uint8)


def q6_k_sub_block_scales(x: np.ndarray) -> np.ndarray:
    """Best signed scale of each 16-value sub-block of `x` (..., 16): codes round(x/scale) in -32..31 with
    the scale refitted to them by least squares weighted by x², over the searched step sizes."""
    peak = np.take_along_axis(x, np.argmax(np.abs(x), -1)[..., None], -1)  # signed largest magnitude
    steps = -(Q6_K_HALF + Q6_K_SEARCH)[:, None]
    codes = np.clip(np.rint(ratio(steps, peak[..., None, :]) * x[..., None, :]), -Q6_K_HALF, Q6_K_HALF - 1)
    weight = (x * x)[..., None, :]
    sxl = np.sum(weight * x[..., None, :] * codes, -1)
    sll = np.sum(weight * codes * codes, -1)
    gain = ratio(sxl * sxl, sll)  # the weighted error is sum(w x²) - gain at the fitted scale
    best = np.argmax(gain, -1)[..., None]
    return np.take_along_axis(ratio(sxl, sll), best, -1)[..., 0]


def quantize_q6_k(weights: np.ndarray) -> np.ndarray:
    """A (rows, cols) float matrix, cols a multiple of 256, as Q6_K bytes (rows, cols/256·210)."""
    blocks = super_blocks(weights)
    x = blocks.reshape(len(blocks), QK_K // Q6_K_SUB, Q6_K_SUB)
    scale = q6_k_sub_block_scales(x)
    peak = np.take_along_axis(scale, np.argmax(np.abs(scale), -1)[:, None], -1)  # signed
    d = fp16(-peak / INT8_SPAN)
    scales = np.clip(np.rint(ratio(scale, d)), -INT8_SPAN, INT8_TOP)
    step = (d * scales)[..., None]
    codes = np.clip(np.rint(ratio(x, step)), -Q6_K_HALF, Q6_K_HALF - 1) + Q6_K_HALF
    codes = codes.astype(np.uint8).reshape(len(blocks), 2, -1, Q6_K_LOW_SPAN)  # (half, nibble, byte)
    low = (codes[:, :, 0] & NIBBLE) | ((codes[:, :, 1] & NIBBLE) << 4)
    top = (codes.reshape(len(blocks), 2, -1, Q6_K_HIGH_SPAN) >> 4) & LOW_TWO_BITS  # (half, bit pair, byte)
    high = top[:, :, 0] | (top[:, :, 1] << 2) | (top[:, :, 2] << 4) | (top[:, :, 3] << 6)
    packed = np.concatenate(
        [
            low.reshape(len(blocks), -1),
            high.reshape(len(blocks), -1),
            scales.astype(np.int8).view(np.uint8),
            as_bytes(d),
        ],
        axis=-1,
        dtype=np.uint8,
    )
    return packed.reshape(weights.shape[0], -1)


K_QUANTISERS = {Q.Q4_K: quantize_q4_k, Q.Q6_K: quantize_q6_k}


def quantize(weights: np.ndarray, qtype: Q) -> tuple[np.ndarray, Q]:
    """A matrix's GGUF bytes in `qtype`, or in llama.cpp's fallback type when its rows do not fill K-quant
    super-blocks (F16 when they do not fill the fallback's blocks either); returns the bytes and the type
    written. Types other than K-quants go to `gguf`."""
    if qtype in K_QUANTISERS and weights.shape[-1] % QK_K:
        qtype = K_QUANT_FALLBACK[qtype]
        if weights.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            qtype = Q.F16
    if qtype in K_QUANTISERS:
        return K_QUANTISERS[qtype](weights), qtype
    return gguf.quants.quantize(weights.astype(np.float32), qtype), qtype
