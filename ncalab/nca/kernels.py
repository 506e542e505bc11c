"""Fused CPU kernels (numba): rule weights, lookup tables, rollouts and tokens.

The eager torch path (simulate.Simulator) spends most of its time moving (B, N, 16) arrays
through memory; here one trajectory's table, hidden units and logits stay in thread-local
buffers small enough for the cache, and trajectories are spread over CPU threads. Bits of the
hashes match ncalab.nca.rng exactly (tested). Every rewrite of the arithmetic here must keep
the same operations in the same order for every value: tests pin the frames bit for bit.
"""

from __future__ import annotations

import math
import os
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

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


@njit(cache=True)
def truncated_row(seed, tag, out):
    """out[:] = the truncated normals of one seed (see ``truncated_normals``)."""
    n_params = out.shape[0]
    base = mix64(mix64(uint64(seed)) ^ uint64(tag))
    for m in range((n_params + 1) // 2):
        key = mix64(base ^ uint64(m))
        need_even = True
        need_odd = 2 * m + 1 < n_params
        a = 0
        while need_even or need_odd:
            z_even, z_odd = _box_muller(mix64(key ^ uint64(a)))
            if need_even and -2.0 <= z_even <= 2.0:
                out[2 * m] = z_even
                need_even = False
            if need_odd and -2.0 <= z_odd <= 2.0:
                out[2 * m + 1] = z_odd
                need_odd = False
            a += 1


@njit(parallel=True, cache=True, nogil=True)
def truncated_normals(seeds, tag, n_params):
    """(B, n_params) standard normals truncated to [-2, 2], by rejection (exact, deterministic).

    Parameters 2m and 2m+1 share the Box-Muller draws hash(seed, tag, m, a), a = 0, 1, ...:
    2m takes the first cosine part inside [-2, 2], 2m+1 the first sine part. The two parts
    are independent normals, so each parameter is an independent truncated normal.
    """
    out = np.empty((seeds.shape[0], n_params), dtype=np.float64)
    for b in prange(seeds.shape[0]):
        truncated_row(seeds[b], tag, out[b])
    return out


@njit(parallel=True, cache=True, nogil=True)
def rule_weights(seeds, tag, c_in, n_col, h1, h2, scale1, scale2, scale3, channel_wrap):
    """The float32 weights ``rollout`` reads, straight from the seeds: the same draws, products
    and roundings as rules.make_rules followed by rules.effective_colour_kernel, without the
    float64 intermediate arrays. Returns eff (B, 9, C, h1), w2 (B, h1, h2), w3 (B, h2, C)."""
    n_rules = seeds.shape[0]
    n1 = 9 * c_in * h1
    n2 = h1 * h2
    n_params = n1 + n2 + h2 * n_col
    eff = np.empty((n_rules, 9, n_col, h1), dtype=np.float32)
    w2 = np.empty((n_rules, h1, h2), dtype=np.float32)
    w3 = np.empty((n_rules, h2, n_col), dtype=np.float32)
    for b in prange(n_rules):
        draws = np.empty(n_params, dtype=np.float64)
        truncated_row(seeds[b], tag, draws)
        off = 1 if channel_wrap else 0
        for k in range(9):
            for c in range(n_col):
                for m in range(h1):
                    eff[b, k, c, m] = np.float32(draws[(k * c_in + c + off) * h1 + m] * scale1)
            if channel_wrap:  # padded channel 0 copies colour C-1, channel C+1 colour 0
                for m in range(h1):
                    eff[b, k, n_col - 1, m] += np.float32(draws[(k * c_in) * h1 + m] * scale1)
                for m in range(h1):
                    eff[b, k, 0, m] += np.float32(draws[(k * c_in + n_col + 1) * h1 + m] * scale1)
        for i in range(n2):
            w2[b, i // h2, i % h2] = np.float32(draws[n1 + i] * scale2)
        for i in range(h2 * n_col):
            w3[b, i // n_col, i % n_col] = np.float32(draws[n1 + n2 + i] * scale3)
    return eff, w2, w3


@njit(parallel=True, cache=True, nogil=True)
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


@njit(parallel=True, cache=True, nogil=True)
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


@njit(cache=True)
def fold_rule(eff, w2, b1, b2, paired, table, bias):
    """One rule's lookup table for ``rollout``, computed in float64 and stored as float32.

    eff (9, C, 4) is the 3x3 kernel per (offset, colour); w2 (4, 16) the 1x1 conv folded into
    it. Paired: rows [g*C*C + a*C + b] hold offsets 2g and 2g+1 (g < 4) with colours a and b,
    then C rows for offset 8 (five lookups a cell instead of nine). Else 9*C single rows.
    Writes every row of table (rows, 16) f32 and bias (16,) f32. No fastmath here: a caller
    compiled with fastmath still gets these exact roundings (flags are per instruction).
    """
    _, n_col, h1 = eff.shape
    h2 = w2.shape[1]
    # single[k, c, j] = sum over m of eff[k, c, m] * w2[m, j], added in the order m = 0, 1, ...
    # (j innermost, so the compiler vectorises over j without changing any sum)
    single = np.zeros((9, n_col, h2), dtype=np.float64)
    for k in range(9):
        for c in range(n_col):
            for m in range(h1):
                e = float(eff[k, c, m])
                for j in range(h2):
                    single[k, c, j] += e * float(w2[m, j])
    if paired:
        for g in range(4):
            for ca in range(n_col):
                for cb in range(n_col):
                    r = g * n_col * n_col + ca * n_col + cb
                    for j in range(h2):
                        table[r, j] = single[2 * g, ca, j] + single[2 * g + 1, cb, j]
        for c in range(n_col):
            for j in range(h2):
                table[4 * n_col * n_col + c, j] = single[8, c, j]
    else:
        for k in range(9):
            for c in range(n_col):
                for j in range(h2):
                    table[k * n_col + c, j] = single[k, c, j]
    for j in range(h2):
        acc = float(b2[j])
        for m in range(h1):
            acc += float(b1[m]) * float(w2[m, j])
        bias[j] = acc


@njit(cache=True)
def table_rows(n_col, paired):
    """Rows of a rule's lookup table (see ``fold_rule``)."""
    return 4 * n_col * n_col + n_col if paired else 9 * n_col


@intrinsic
def _hidden_cell(typingctx, tab_t, bias_t, r0_t, r1_t, r2_t, r3_t, r4_t, hid_t, n_t):
    """hid[:, n] = max(((((bias + tab[r0]) + tab[r1]) + tab[r2]) + tab[r3]) + tab[r4], 0) over 16
    hidden units, as two 8-wide float32 vectors: the same IEEE adds in the same order as a loop
    over the units, without the aliasing checks the compiler puts around such a loop for every
    cell. tab (rows, 16), bias (16,) and hid (16, N) are C-contiguous float32 arrays."""
    sig = types.void(tab_t, bias_t, r0_t, r1_t, r2_t, r3_t, r4_t, hid_t, n_t)

    def codegen(context, builder, sig, args):
        tab, bias, r0, r1, r2, r3, r4, hid, n = args
        tab_a = context.make_array(sig.args[0])(context, builder, tab)
        bias_a = context.make_array(sig.args[1])(context, builder, bias)
        hid_a = context.make_array(sig.args[7])(context, builder, hid)
        i64 = ir.IntType(64)
        vec = ir.VectorType(ir.FloatType(), 8)
        zero = ir.Constant(vec, [0.0] * 8)
        n_cells = cgutils.unpack_tuple(builder, hid_a.shape, 2)[1]
        rows = [builder.mul(context.cast(builder, r, t, types.int64), ir.Constant(i64, 16))
                for r, t in zip((r0, r1, r2, r3, r4), sig.args[2:7])]
        cell = context.cast(builder, n, sig.args[8], types.int64)

        def load(base, offset):
            return builder.load(builder.bitcast(builder.gep(base, [offset]), vec.as_pointer()), align=4)

        for half in range(2):
            first = ir.Constant(i64, 8 * half)
            acc = load(bias_a.data, first)
            for row in rows:
                acc = builder.fadd(acc, load(tab_a.data, builder.add(row, first)))
            # max(h, 0) as the loop form compiles it: 0 where h < 0, else h
            acc = builder.select(builder.fcmp_ordered("<", acc, zero), zero, acc)
            for k in range(8):
                j = ir.Constant(i64, 8 * half + k)
                ptr = builder.gep(hid_a.data, [builder.add(builder.mul(j, n_cells), cell)])
                builder.store(builder.extract_element(acc, ir.Constant(ir.IntType(32), k)), ptr)
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True, nogil=True, fastmath={"contract"})
def rollout(eff, w2, b1, b2, w3, b3, paired, rule_row, sim_seeds, state, height, width, nbr, active, frozen,
            t0, first_gap, dt, n_frames, temperature, identity_bias, span, step_tag, early_exit, out):
    """Advance the trajectories listed in ``active`` and record ``n_frames`` frames of each.

    Trajectory b runs rule rule_row[b]: eff (R, 9, C, 4), w2 (R, 4, 16), b1 (R, 4), b2 (R, 16),
    w3 (R, 16, C), b3 (R, C); each trajectory folds its rule's lookup table (``fold_rule``) into
    thread-local memory, where it stays in cache. state (B, N) u8, updated in place for active
    trajectories, N = height * width; nbr (N, 9) int64 neighbour indices (the unpaired path;
    the paired one indexes the torus directly); frame f is recorded after
    first_gap + f*dt steps into out (len(active), n_frames, N) u8. The noise for step t, cell n,
    colour c is gumbel(hash(seed, step_tag, t, n, c)).

    A step has two halves: the table lookups, cell by cell (the 16 hidden units added as
    vectors), then the last layer, argmax and tie check with cells as the inner loop, where the
    compiler vectorises (the weights are the same for every cell of a rule). The last layer
    keeps each logit in a register: the bias, then the 16 products added in order (contracted
    to fused multiply-adds where the CPU has them, as before).

    Early exit (exact): a step after which the grid is unchanged and in which no cell was
    near a tie (so no noise was drawn: the step was the deterministic argmax of a function of
    the grid) is repeated identically forever. The trajectory is then marked in ``frozen``
    (B,) int64, which holds -1 until then and afterwards the number of steps it had taken,
    and its remaining frames, in this call and later ones, are copies of the grid.
    """
    n_cells = state.shape[1]
    n_col = w3.shape[2]
    n_hidden = w2.shape[2]
    tie_width = np.float32(span * temperature)
    rows = table_rows(n_col, paired)
    for i in prange(active.shape[0]):
        b = active[i]
        cur = state[b].copy()
        if frozen[b] >= 0:
            for f in range(n_frames):
                for n in range(n_cells):
                    out[i, f, n] = cur[n]
            continue
        r = rule_row[b]
        tab = np.empty((rows, n_hidden), dtype=np.float32)
        bias = np.empty(n_hidden, dtype=np.float32)
        fold_rule(eff[r], w2[r], b1[r], b2[r], paired, tab, bias)
        nxt = np.empty_like(cur)
        pc = np.empty(n_cells, dtype=np.int64)
        hv = np.empty(n_hidden, dtype=np.float32)
        hid = np.empty((16, n_cells), dtype=np.float32)
        lg = np.empty((n_col, n_cells), dtype=np.float32)
        top = np.empty(n_cells, dtype=np.float32)
        best = np.empty(n_cells, dtype=np.int64)
        close = np.empty(n_cells, dtype=np.int32)
        wt = w3[r]
        bb = b3[r]
        seed_key = mix64(mix64(uint64(sim_seeds[b])) ^ uint64(step_tag))
        t = t0
        still = False
        for f in range(n_frames):
            gap = first_gap if f == 0 else dt
            for _ in range(0 if still else gap):
                # First half: five table rows a cell (paired) or nine (unpaired), 16 hidden units.
                if paired:
                    # Neighbour offsets in row-major order 0..8; pairs (0,1), (4,5), (6,7) are
                    # horizontal neighbours, so their codes a*C + b are shared: pc[m] holds
                    # cur[m] * C + cur[m's right neighbour].
                    for y in range(height):
                        y0 = y * width
                        for x in range(width - 1):
                            pc[y0 + x] = cur[y0 + x] * n_col + cur[y0 + x + 1]
                        pc[y0 + width - 1] = cur[y0 + width - 1] * n_col + cur[y0]
                    for y in range(height):
                        ym = (y - 1 if y > 0 else height - 1) * width
                        yp = (y + 1 if y < height - 1 else 0) * width
                        y0 = y * width
                        for x in range(width):
                            xm = x - 1 if x > 0 else width - 1
                            xp = x + 1 if x < width - 1 else 0
                            _hidden_cell(tab, bias, pc[ym + xm], (n_col + cur[ym + xp]) * n_col + cur[y0 + xm],
                                         2 * n_col * n_col + pc[y0 + x], 3 * n_col * n_col + pc[yp + xm],
                                         4 * n_col * n_col + cur[yp + xp], hid, y0 + x)
                else:  # rare (more than 16 colours): a runtime trip count lets the loop vectorise
                    for n in range(n_cells):
                        for j in range(n_hidden):
                            hv[j] = bias[j]
                        for k in range(9):
                            t_k = tab[k * n_col + cur[nbr[n, k]]]
                            for j in range(n_hidden):
                                hv[j] += t_k[j]
                        for j in range(n_hidden):
                            hv[j] = max(hv[j], _ZERO)
                        for j in range(16):
                            hid[j, n] = hv[j]
                for c in range(n_col):
                    row = lg[c]
                    bc = bb[c]
                    w0 = wt[0, c]; w1 = wt[1, c]; w2_ = wt[2, c]; w3_ = wt[3, c]
                    w4 = wt[4, c]; w5 = wt[5, c]; w6 = wt[6, c]; w7 = wt[7, c]
                    w8 = wt[8, c]; w9 = wt[9, c]; w10 = wt[10, c]; w11 = wt[11, c]
                    w12 = wt[12, c]; w13 = wt[13, c]; w14 = wt[14, c]; w15 = wt[15, c]
                    for n in range(n_cells):
                        acc = bc
                        acc += w0 * hid[0, n]
                        acc += w1 * hid[1, n]
                        acc += w2_ * hid[2, n]
                        acc += w3_ * hid[3, n]
                        acc += w4 * hid[4, n]
                        acc += w5 * hid[5, n]
                        acc += w6 * hid[6, n]
                        acc += w7 * hid[7, n]
                        acc += w8 * hid[8, n]
                        acc += w9 * hid[9, n]
                        acc += w10 * hid[10, n]
                        acc += w11 * hid[11, n]
                        acc += w12 * hid[12, n]
                        acc += w13 * hid[13, n]
                        acc += w14 * hid[14, n]
                        acc += w15 * hid[15, n]
                        row[n] = acc
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
                tied = False
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
                            tied = True
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
                changed = 0
                for n in range(n_cells):
                    v = best[n]
                    changed |= v != cur[n]
                    nxt[n] = v
                t += 1
                tmp = cur
                cur = nxt
                nxt = tmp
                if early_exit and changed == 0 and not tied:
                    still = True
                    break
            for n in range(n_cells):
                out[i, f, n] = cur[n]
        for n in range(n_cells):
            state[b, n] = cur[n]
        if still:
            frozen[b] = t


def _serialised(kernel):
    """Launch a parallel kernel under LAUNCH_LOCK (see the threading-layer note above)."""

    def launch(*args):
        with LAUNCH_LOCK:
            return kernel(*args)

    launch.__doc__, launch.__name__, launch.kernel = kernel.__doc__, kernel.__name__, kernel
    return launch


truncated_normals = _serialised(truncated_normals)
rule_weights = _serialised(rule_weights)
initial_states = _serialised(initial_states)
patch_tokens = _serialised(patch_tokens)
rollout = _serialised(rollout)
