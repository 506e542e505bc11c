"""Fused CPU kernels (numba): one pass per cell does lookup, MLP, argmax and tie-breaking.

The eager torch path (simulate.Simulator) spends most of its time moving (B, N, 16) arrays
through memory; here a cell's 16 hidden units and C logits stay in registers, and rules are
spread over CPU threads. Bits of the hashes match ncalab.nca.rng exactly (tested).
"""

from __future__ import annotations

import math
import os
import threading

import numba
import numpy as np
from numba import njit, prange, uint64

# numba's default OpenMP layer aborts a process that forks after using it (DataLoader workers
# do); the workqueue layer is fork-safe but not thread-safe, so launches go through LAUNCH_LOCK.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
LAUNCH_LOCK = threading.Lock()

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_INV53 = 2.0**-53
_ZERO = np.float32(0.0)


@njit(inline="always")
def mix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def uniform_open(key):
    return (float(mix64(key) >> _S11) + 0.5) * _INV53


@njit(inline="always")
def _box_muller(key):
    """Two independent standard normals from one hashed key."""
    r = math.sqrt(-2.0 * math.log(uniform_open(key ^ uint64(1))))
    theta = 2.0 * math.pi * uniform_open(key ^ uint64(2))
    return r * math.cos(theta), r * math.sin(theta)


@njit(parallel=True, cache=True)
def truncated_normals(seeds, tag, n_params):
    """(B, n_params) standard normals truncated to [-2, 2], by rejection (exact, deterministic).

    Parameters 2m and 2m+1 share the Box-Muller draws hash(seed, tag, m, a), a = 0, 1, ...:
    2m takes the first cosine part inside [-2, 2], 2m+1 the first sine part. The two parts
    are independent normals, so each parameter is an independent truncated normal.
    """
    out = np.empty((seeds.shape[0], n_params), dtype=np.float64)
    for b in prange(seeds.shape[0]):
        base = mix64(mix64(uint64(seeds[b])) ^ uint64(tag))
        for m in range((n_params + 1) // 2):
            key = mix64(base ^ uint64(m))
            need_even = True
            need_odd = 2 * m + 1 < n_params
            a = 0
            while need_even or need_odd:
                z_even, z_odd = _box_muller(mix64(key ^ uint64(a)))
                if need_even and -2.0 <= z_even <= 2.0:
                    out[b, 2 * m] = z_even
                    need_even = False
                if need_odd and -2.0 <= z_odd <= 2.0:
                    out[b, 2 * m + 1] = z_odd
                    need_odd = False
                a += 1
    return out


@njit(parallel=True, cache=True)
def initial_states(sim_seeds, n_colours, n_cells, tag_z, tag_cell):
    """(B, n_cells) u8 grids: z ~ N(0, I_C) per trajectory, cells i.i.d. from softmax(z)."""
    out = np.empty((sim_seeds.shape[0], n_cells), dtype=np.uint8)
    for b in prange(sim_seeds.shape[0]):
        base = mix64(uint64(sim_seeds[b]))
        zkey = mix64(base ^ uint64(tag_z))
        z = np.empty(n_colours, dtype=np.float64)
        for c in range(0, n_colours, 2):
            z0, z1 = _box_muller(mix64(zkey ^ uint64(c)))
            z[c] = z0
            if c + 1 < n_colours:
                z[c + 1] = z1
        p = np.exp(z - z.max())
        cdf = np.cumsum(p / p.sum())
        cdf[-1] = 1.0  # rounding must not leave the last colour short
        ckey = mix64(base ^ uint64(tag_cell))
        for n in range(n_cells):
            u = uniform_open(mix64(ckey ^ uint64(n)))
            c = 0
            while cdf[c] <= u:
                c += 1
            out[b, n] = c
    return out


@njit(parallel=True, cache=True)
def patch_tokens(grids, height, width, patch, alphabet):
    """(B, F, H*W) u8 grids -> (B, F, (H/P)*(W/P)) int32 patch tokens (see nca.tokens)."""
    n_rules, n_frames, _ = grids.shape
    hp = height // patch
    wp = width // patch
    out = np.empty((n_rules, n_frames, hp * wp), dtype=np.int32)
    for b in prange(n_rules):
        for f in range(n_frames):
            for py in range(hp):
                for px in range(wp):
                    tok = 0
                    scale = 1
                    for dy in range(patch):
                        for dx in range(patch):
                            tok += int(grids[b, f, (py * patch + dy) * width + px * patch + dx]) * scale
                            scale *= alphabet
                    out[b, f, py * wp + px] = tok
    return out


@njit(parallel=True, cache=True)
def fold_tables(eff, w2, b1, b2, paired):
    """Lookup tables for ``rollout``, computed in float64 and stored as float32.

    eff (B, 9, C, 4) is the 3x3 kernel per (offset, colour); w2 (B, 4, 16) the 1x1 conv folded
    into it. Paired: rows [g*C*C + a*C + b] hold offsets 2g and 2g+1 (g < 4) with colours a and b,
    then C rows for offset 8 (five lookups a cell instead of nine). Else 9*C single rows.
    """
    n_rules, _, n_col, h1 = eff.shape
    h2 = w2.shape[2]
    rows = 4 * n_col * n_col + n_col if paired else 9 * n_col
    table = np.empty((n_rules, rows, h2), dtype=np.float32)  # every row is written below
    bias = np.empty((n_rules, h2), dtype=np.float32)
    for b in prange(n_rules):
        single = np.empty((9, n_col, h2), dtype=np.float64)
        for k in range(9):
            for c in range(n_col):
                for j in range(h2):
                    acc = 0.0
                    for m in range(h1):
                        acc += float(eff[b, k, c, m]) * float(w2[b, m, j])
                    single[k, c, j] = acc
        if paired:
            for g in range(4):
                for ca in range(n_col):
                    for cb in range(n_col):
                        r = g * n_col * n_col + ca * n_col + cb
                        for j in range(h2):
                            table[b, r, j] = single[2 * g, ca, j] + single[2 * g + 1, cb, j]
            for c in range(n_col):
                for j in range(h2):
                    table[b, 4 * n_col * n_col + c, j] = single[8, c, j]
        else:
            for k in range(9):
                for c in range(n_col):
                    for j in range(h2):
                        table[b, k * n_col + c, j] = single[k, c, j]
        for j in range(h2):
            acc = float(b2[b, j])
            for m in range(h1):
                acc += float(b1[b, m]) * float(w2[b, m, j])
            bias[b, j] = acc
    return table, bias


@njit(inline="always")
def _add_row(h, tab, r):
    """h + tab[r] for a 16-wide hidden vector kept as a tuple (so it lives in registers)."""
    return (
        h[0] + tab[r, 0], h[1] + tab[r, 1], h[2] + tab[r, 2], h[3] + tab[r, 3],
        h[4] + tab[r, 4], h[5] + tab[r, 5], h[6] + tab[r, 6], h[7] + tab[r, 7],
        h[8] + tab[r, 8], h[9] + tab[r, 9], h[10] + tab[r, 10], h[11] + tab[r, 11],
        h[12] + tab[r, 12], h[13] + tab[r, 13], h[14] + tab[r, 14], h[15] + tab[r, 15],
    )


@njit(parallel=True, cache=True, fastmath={"contract"})
def rollout(table, paired, bias2, w3, b3, sim_seeds, state, nbr, active,
            t0, first_gap, dt, n_frames, temperature, identity_bias, span, step_tag, out):
    """Advance the rules listed in ``active`` and record ``n_frames`` frames of each.

    table (B, rows, 16) f32 from ``fold_tables`` (paired or single layout); bias2 (B, 16);
    w3 (B, 16, C); b3 (B, C); state (B, N) u8, updated in place for active rules; nbr (N, 9)
    neighbour indices; frame f is recorded after first_gap + f*dt steps into
    out (len(active), n_frames, N) u8. The noise for step t, cell n, colour c is
    gumbel(hash(seed, step_tag, t, n, c)).

    A step has two halves: the table lookups, cell by cell (hidden units kept in registers),
    then the last layer, argmax and tie check with cells as the inner loop, where the
    compiler vectorises (the weights are the same for every cell of a rule).
    """
    n_cells = state.shape[1]
    n_col = w3.shape[2]
    cc = uint64(n_col)
    tie_width = np.float32(span * temperature)
    for i in prange(active.shape[0]):
        b = active[i]
        cur = state[b].copy()
        nxt = np.empty_like(cur)
        hid = np.empty((16, n_cells), dtype=np.float32)
        lg = np.empty((n_col, n_cells), dtype=np.float32)
        top = np.empty(n_cells, dtype=np.float32)
        best = np.empty(n_cells, dtype=np.int64)
        close = np.empty(n_cells, dtype=np.int32)
        tab = table[b]
        wt = w3[b]
        bb = b3[b]
        bias = (bias2[b, 0], bias2[b, 1], bias2[b, 2], bias2[b, 3], bias2[b, 4], bias2[b, 5], bias2[b, 6], bias2[b, 7], bias2[b, 8], bias2[b, 9], bias2[b, 10], bias2[b, 11], bias2[b, 12], bias2[b, 13], bias2[b, 14], bias2[b, 15])
        seed_key = mix64(mix64(uint64(sim_seeds[b])) ^ uint64(step_tag))
        t = t0
        for f in range(n_frames):
            gap = first_gap if f == 0 else dt
            for _ in range(gap):
                for n in range(n_cells):
                    h = bias
                    if paired:
                        for g in range(4):
                            r = (uint64(g) * cc + uint64(cur[nbr[n, 2 * g]])) * cc + uint64(cur[nbr[n, 2 * g + 1]])
                            h = _add_row(h, tab, r)
                        h = _add_row(h, tab, uint64(4) * cc * cc + uint64(cur[nbr[n, 8]]))
                    else:
                        for k in range(9):
                            h = _add_row(h, tab, uint64(k) * cc + uint64(cur[nbr[n, k]]))
                    hid[0, n] = max(h[0], _ZERO); hid[1, n] = max(h[1], _ZERO); hid[2, n] = max(h[2], _ZERO); hid[3, n] = max(h[3], _ZERO)
                    hid[4, n] = max(h[4], _ZERO); hid[5, n] = max(h[5], _ZERO); hid[6, n] = max(h[6], _ZERO); hid[7, n] = max(h[7], _ZERO)
                    hid[8, n] = max(h[8], _ZERO); hid[9, n] = max(h[9], _ZERO); hid[10, n] = max(h[10], _ZERO); hid[11, n] = max(h[11], _ZERO)
                    hid[12, n] = max(h[12], _ZERO); hid[13, n] = max(h[13], _ZERO); hid[14, n] = max(h[14], _ZERO); hid[15, n] = max(h[15], _ZERO)
                for c in range(n_col):
                    row = lg[c]
                    bc = bb[c]
                    for n in range(n_cells):
                        row[n] = bc
                    for j in range(16):
                        w = wt[j, c]
                        hj = hid[j]
                        for n in range(n_cells):
                            row[n] += w * hj[n]
                if identity_bias != 0.0:
                    for n in range(n_cells):
                        lg[cur[n], n] += identity_bias
                for n in range(n_cells):
                    top[n] = lg[0, n]
                    best[n] = 0
                for c in range(1, n_col):
                    row = lg[c]
                    for n in range(n_cells):
                        v = row[n]
                        gt = v > top[n]
                        best[n] = c if gt else best[n]
                        top[n] = v if gt else top[n]
                if temperature > 0.0:
                    # A near tie: another logit within tie_width of the top (counted per cell,
                    # vectorised over cells; the scalar pass below touches only tied cells).
                    for n in range(n_cells):
                        close[n] = 0
                    for c in range(n_col):
                        row = lg[c]
                        for n in range(n_cells):
                            close[n] += 1 if row[n] > top[n] - tie_width else 0
                    step_key = mix64(seed_key ^ uint64(t))
                    for n in range(n_cells):
                        if close[n] > 1:
                            # The noise decides: gumbel-max, exactly as the full draw would.
                            # Colours below top - tie_width cannot win whatever their noise.
                            cell_key = mix64(step_key ^ uint64(n))
                            thr = top[n] - tie_width
                            best_score = -np.inf
                            for c in range(n_col):
                                if lg[c, n] > thr:
                                    u = uniform_open(mix64(cell_key ^ uint64(c)))
                                    score = float(lg[c, n]) / temperature - math.log(-math.log(u))
                                    if score > best_score:
                                        best_score = score
                                        best[n] = c
                for n in range(n_cells):
                    nxt[n] = best[n]
                t += 1
                tmp = cur
                cur = nxt
                nxt = tmp
            for n in range(n_cells):
                out[i, f, n] = cur[n]
        for n in range(n_cells):
            state[b, n] = cur[n]


def _serialised(kernel):
    """Launch a parallel kernel under LAUNCH_LOCK (see the threading-layer note above)."""

    def launch(*args):
        with LAUNCH_LOCK:
            return kernel(*args)

    launch.__doc__, launch.__name__, launch.kernel = kernel.__doc__, kernel.__name__, kernel
    return launch


truncated_normals = _serialised(truncated_normals)
initial_states = _serialised(initial_states)
patch_tokens = _serialised(patch_tokens)
fold_tables = _serialised(fold_tables)
rollout = _serialised(rollout)
