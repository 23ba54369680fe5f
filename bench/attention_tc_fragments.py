#!/usr/bin/env python3
#===- attention_tc_fragments.py - Host check of AttentionTC.cu's fragments -===#
#
# Usage: .venv/bin/python bench/attention_tc_fragments.py   (numpy; no GPU)
# Emulates ldmatrix (.trans) and mma.m16n8k16 as the PTX ISA lays out their
# fragments, drives them with the address rules of AttentionTC.cu (aAddr,
# bAddr) and the loops of mulAbt and mulPb, and checks the two products the
# kernels are built from against numpy: 16 rows x N of A B^T (Q K^T,
# K Q^T, V dO^T, dO V^T) and P (as accumulators) x B (P V, P^T dO, dS^T Q,
# dS K). Prints "ok" per shape; raises on a mismatch. Keep in step with
# the kernel: it duplicates the address formulas, it does not import them.
#
#===----------------------------------------------------------------------===#
import numpy as np
rng = np.random.default_rng(0)

def ldmatrix4(tile, addr, trans):
    # addr(lane) -> (row, col) of the 8-element row that lane supplies.
    regs = [[None]*4 for _ in range(32)]
    for i in range(4):
        rows = [addr(8*i + r) for r in range(8)]
        mat = np.array([tile[r, c:c+8] for (r, c) in rows])  # 8x8
        for l in range(32):
            if not trans:
                regs[l][i] = (mat[l//4, 2*(l%4)], mat[l//4, 2*(l%4)+1])
            else:
                regs[l][i] = (mat[2*(l%4), l//4], mat[2*(l%4)+1, l//4])
    return regs

def mma(C, A, b0, b1):
    # A: per lane 4 pairs, b0/b1 per lane pairs, C: per lane 4 floats
    Am = np.zeros((16, 16)); Bm = np.zeros((16, 8))
    for l in range(32):
        g, t = l//4, l%4
        a = A[l]
        Am[g, 2*t:2*t+2] = a[0]; Am[g+8, 2*t:2*t+2] = a[1]
        Am[g, 2*t+8:2*t+10] = a[2]; Am[g+8, 2*t+8:2*t+10] = a[3]
        Bm[2*t:2*t+2, g] = b0[l]; Bm[2*t+8:2*t+10, g] = b1[l]
    D = Am @ Bm
    for l in range(32):
        g, t = l//4, l%4
        C[l][0] += D[g, 2*t]; C[l][1] += D[g, 2*t+1]
        C[l][2] += D[g+8, 2*t]; C[l][3] += D[g+8, 2*t+1]

aAddr = lambda r, c: (lambda l: (r + (l & 15), c + 8*(l >> 4)))
bAddr = lambda r, c: (lambda l: (r + (l & 7) + 8*(l >> 4), c + 8*((l >> 3) & 1)))

def acc_to_matrix(acc, N):
    M = np.zeros((16, N))
    for l in range(32):
        g, t = l//4, l%4
        for n in range(N//8):
            M[g, 8*n+2*t:8*n+2*t+2] = acc[l][n][0:2]
            M[g+8, 8*n+2*t:8*n+2*t+2] = acc[l][n][2:4]
    return M

def mulAbt(Atile, arow, Btile, D, N):
    acc = [[[0.0]*4 for _ in range(N//8)] for _ in range(32)]
    for kk in range(D//16):
        a = ldmatrix4(Atile, aAddr(arow, 16*kk), False)
        for nn in range(N//16):
            b = ldmatrix4(Btile, bAddr(16*nn, 16*kk), False)
            c0 = [acc[l][2*nn] for l in range(32)]; c1 = [acc[l][2*nn+1] for l in range(32)]
            mma(c0, a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
            mma(c1, a, [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])
    return acc

def mulPb(acc, p, Btile, D, K):
    for kk in range(K//16):
        a = [(tuple(p[l][2*kk][0:2]), tuple(p[l][2*kk][2:4]), tuple(p[l][2*kk+1][0:2]), tuple(p[l][2*kk+1][2:4])) for l in range(32)]
        for nn in range(D//16):
            b = ldmatrix4(Btile, aAddr(16*kk, 16*nn), True)
            c0 = [acc[l][2*nn] for l in range(32)]; c1 = [acc[l][2*nn+1] for l in range(32)]
            mma(c0, a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
            mma(c1, a, [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])

for D, N in [(64, 64), (128, 32), (64, 32)]:
    Q = rng.standard_normal((64, D)); K = rng.standard_normal((N, D)); V = rng.standard_normal((N, D))
    w = 2  # warp 2 owns rows 32..47
    s = mulAbt(Q, 16*w, K, D, N)
    S = acc_to_matrix(s, N)
    assert np.allclose(S, Q[16*w:16*w+16] @ K.T), "QK^T"
    o = [[[0.0]*4 for _ in range(D//8)] for _ in range(32)]
    mulPb(o, s, V, D, N)
    assert np.allclose(acc_to_matrix(o, D), S @ V), "PV"
    print("ok D", D, "N", N)
