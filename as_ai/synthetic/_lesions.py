"""The sacroiliac joints (normal, graded sacroiliitis, mimics) and hip involvement (private).

Each SI joint is drawn in its own frame: ``s`` runs along the joint (0 at S1, 1 at S3) and ``n`` is
the distance in mm towards the ilium (lateral). On an AP film the oblique joint shows two lucent
lines (anterior = lateral, posterior = medial) with thin subchondral plates on either side.

Everything drawn here is multiplied by a window that is exactly zero outside the joint's support,
and the support lies inside the ``sij_*`` ROI, so a change of grade changes pixels only there.
The lesion random stream draws the same candidate erosions, bridges and irregularities whatever the
grade; the grade only decides how many are used and how strongly (so grades progress coherently).
"""
from __future__ import annotations

import numpy as np

from ._anatomy import MU_CORT, MU_TRAB, Side
from ._canvas import F, Box, Canvas

S_LO, S_HI = -0.12, 1.12      # joint support along s
N_LO, N_HI = -16.0, 24.0      # joint support across (mm; + = iliac side)
HIP_PAD = 12.0                 # hip support beyond the acetabular roof (mm)
JOINT_GAIN = 2.4                # overall contrast of the joint drawing
MIMICS = ("osteitis_condensans_ilii", "dish", "degenerative")


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _g(x, sigma):
    return np.exp(-0.5 * (x / sigma) ** 2)


def joint_support_uv(side: Side) -> np.ndarray:
    """Anatomical points outlining the joint's support (for its ROI)."""
    pts = []
    for s in np.linspace(S_LO, S_HI, 9):
        for n in (N_LO, N_HI):
            pts.append(side.joint_point(s, n))
    return np.array(pts)


def hip_support_uv(side: Side) -> np.ndarray:
    r = side.head_r + side.hip_space + HIP_PAD
    return np.array([side.head - r, side.head + r])


def joint_lesion_draws(rng: np.random.Generator) -> dict:
    """Grade-independent random draws for one joint (from that side's lesion stream)."""
    k = 24
    return dict(
        er_s=rng.uniform(0.30, 0.98, k), er_r=rng.uniform(0.7, 1.6, k), er_side=rng.random(k),
        er_off=rng.uniform(-0.3, 1.0, k), er_amp=rng.uniform(0.7, 1.3, k),
        irr_ph=rng.uniform(0, 2 * np.pi, 6), irr_f=rng.uniform(3, 14, 6),
        br_s=rng.uniform(0.35, 0.9, 3), br_len=rng.uniform(0.05, 0.11, 3),
        scl_var=rng.uniform(0.8, 1.25), blur_var=rng.uniform(0.85, 1.2),
        g1_amp=rng.uniform(0.85, 1.15), ost=rng.uniform(-1, 1, 4),
    )


def _irregular(s, draws, n_terms: int) -> np.ndarray:
    out = np.zeros_like(s)
    for k in range(n_terms):
        out += np.sin(draws["irr_f"][k] * np.pi * s + draws["irr_ph"][k]) / (1 + k)
    return out


def render_joint(cv: Canvas, side: Side, box: Box, grade: int, draws: dict, mimic: str | None,
                 mimic_draws: dict) -> np.ndarray:
    """Attenuation of one SI joint (base appearance, lesions of ``grade``, and a mimic) on ``box``."""
    U, V = cv.uv(box)
    e, nh, L = side.frame()
    dx = U - side.j_top[0]; dy = V - side.j_top[1]
    s = (dx * e[0] + dy * e[1]) / L
    n = dx * nh[0] + dy * nh[1] - side.bulge * 4 * s * (1 - s)
    win = (_smoothstep(S_LO, S_LO + 0.12, s) * (1 - _smoothstep(S_HI - 0.12, S_HI, s))
           * _smoothstep(N_LO, N_LO + 5, n) * (1 - _smoothstep(N_HI - 5, N_HI, n)))
    a = side.ant(s); p = -side.post(s)
    sc = np.clip(s, 0.0, 1.0)
    ends = _smoothstep(-0.06, 0.06, s) * (1 - _smoothstep(0.98, 1.07, s))
    synovial = 0.55 + 0.45 * _smoothstep(0.25, 0.5, s)
    jw = side.joint_width
    g = int(grade)
    # grade-dependent parameters
    blur = {0: 1.0, 1: 1.55, 2: 1.7, 3: 2.0, 4: 1.6}[g] * (draws["blur_var"] if g else 1.0)
    plate_amp = {0: 1.0, 1: 0.62, 2: 0.55, 3: 0.35, 4: 0.12}[g]
    gap_amp = {0: 1.0, 1: 0.92, 2: 0.95, 3: 1.25, 4: 0.07}[g]
    width_f = {0: 1.0, 1: 1.0, 2: 1.05, 3: 1.6, 4: 0.5}[g]
    if mimic == "degenerative":
        width_f *= 0.6 + 0.25 * _smoothstep(0.0, 0.4, 1 - sc)
    irr = _irregular(s, draws, 6)
    out = np.zeros(U.shape, F)
    # the two joint lines: lucent gap with subchondral plates either side
    for k, (line, amp) in enumerate(((a, 1.0), (p, 0.75))):
        half = 0.5 * jw * width_f * (1 + (0.12 * irr if g >= 3 else 0.0))
        gap_profile = np.clip(1.0 - np.abs(n - line) / half, 0, 1) if g < 4 else _g(n - line, 0.8)
        gap_profile = np.maximum(gap_profile, 0) ** 0.8
        if blur > 1.0:
            gap_profile = 0.6 * gap_profile + 0.4 * _g(n - line, half * blur * 0.8)
        gap = 0.055 * amp * gap_amp * synovial * ends * gap_profile
        if g == 3:  # partial bridging
            for bs, bl in zip(draws["br_s"][:2], draws["br_len"][:2]):
                gap *= 1 - 0.92 * _g(s - bs, bl * 0.5)
        out -= gap
        plates = (_g(n - (line + half + 0.5), 0.55 * blur) * 1.25 + _g(n - (line - half - 0.5), 0.5 * blur))
        out += 0.030 * amp * plate_amp * ends * plates
    if g == 4:  # fused joint: a faint dense "ghost" line
        out += 0.018 * ends * _g(n - a, 0.9) + 0.01 * ends * _g(n - p, 0.9)
    # erosions: small, iliac side, lower joint (g2); confluent (g3)
    n_er = {0: 0, 1: 0, 2: 5, 3: 20, 4: 0}[g]
    if n_er:
        rscale = 1.0 if g == 2 else 1.45
        for k in range(n_er):
            iliac = draws["er_side"][k] < (0.9 if g == 2 else 0.75)
            sk = draws["er_s"][k] if g == 3 else 0.5 + 0.5 * draws["er_s"][k]
            rk = draws["er_r"][k] * rscale
            ak = side.ant(sk)
            half = 0.5 * jw * width_f
            nk = ak + (half + rk * draws["er_off"][k] * 0.8 if iliac else -half - rk * draws["er_off"][k] * 0.6)
            d2 = ((s - sk) * L / (rk * 1.3)) ** 2 + ((n - nk) / rk) ** 2
            blob = np.exp(-0.5 * d2 * 1.6)
            out -= (0.045 if g == 2 else 0.06) * draws["er_amp"][k] * blob * ends
    # sclerosis: mainly iliac, widens with grade, fades after ankylosis
    scl_amp = {0: 0.0, 1: 0.0, 2: 0.035, 3: 0.15, 4: 0.05}[g] * draws["scl_var"]
    if scl_amp:
        lam = {2: 3.5, 3: 10.0, 4: 7.0}[g] * (1 + 0.15 * irr)
        along = _smoothstep(0.12, 0.4, s) * (1 - _smoothstep(1.0, 1.1, s))
        il = np.where(n > a, np.exp(-(n - a) / lam), _g(n - a, 1.2)) * _smoothstep(a - 2.5, a, n)
        sa = np.where(n < p, np.exp(-(p - n) / (lam * 0.45)), _g(n - p, 1.0)) * (1 - _smoothstep(p, p + 2.5, n))
        out += scl_amp * along * (il + 0.4 * sa)
    out += _mimic(mimic, s, n, a, p, sc, L, mimic_draws)
    return (JOINT_GAIN * out * win).astype(F)


def _mimic(mimic, s, n, a, p, sc, L, md) -> np.ndarray:
    if mimic is None or mimic == "none":
        return np.zeros(s.shape, F)
    if mimic == "osteitis_condensans_ilii":
        # triangular, homogeneous iliac sclerosis over the lower joint; the joint itself is normal
        h = md.get("size", 1.0) * 16.0 * _smoothstep(0.25, 0.95, s)
        tri = _smoothstep(a + 0.6, a + 1.8, n) * (1 - _smoothstep(a + h - 1.5, a + h + 1.5, n))
        tri *= (1 - _smoothstep(0.97, 1.08, s))
        return (0.11 * md.get("density", 1.0) * tri).astype(F)
    if mimic == "dish":
        # a flowing bony bridge beside the upper (non-synovial) joint; the joint space is kept
        t = np.exp(-0.5 * ((s - 0.02) * L / 7.0) ** 2) * _smoothstep(-14, -8, n) * (1 - _smoothstep(12, 18, n))
        rim = np.exp(-0.5 * ((s + 0.02 - 0.04 * np.sin(n / 3.0)) * L / 2.0) ** 2)
        return (0.07 * t + 0.05 * rim * _smoothstep(-12, -6, n) * (1 - _smoothstep(10, 16, n))).astype(F)
    if mimic == "degenerative":
        # narrowing (drawn above), marginal osteophytes at the lower end, thin even sclerosis; no erosions
        ost = np.exp(-0.5 * (((s - 1.02) * L / 3.5) ** 2 + ((n - a - 1.0) / 3.5) ** 2))
        ost += 0.7 * np.exp(-0.5 * (((s + 0.02) * L / 3.0) ** 2 + ((n - a - 2.0) / 3.0) ** 2))
        scl = _smoothstep(0.3, 0.5, s) * (np.exp(-np.abs(n - a) / 2.2) + np.exp(-np.abs(n - p) / 2.2))
        return (0.06 * ost + 0.02 * scl).astype(F)
    raise ValueError(f"unknown mimic {mimic!r}")


def render_hip_involvement(cv: Canvas, side: Side, box: Box, md: dict) -> np.ndarray:
    """Concentric hip joint-space narrowing with a collar osteophyte (AS hip disease)."""
    U, V = cv.uv(box)
    h = side.head
    sg = side.sign
    rho = np.hypot(U - h[0], V - h[1])
    ang = np.arctan2(V - h[1], (U - h[0]) * sg)
    roof_w = np.clip(1.0 - np.abs(ang + np.pi * 0.52) / (np.pi * 0.45), 0, 1) ** 0.5
    js_new = side.hip_space * md.get("narrow", 0.35)
    r_in = side.head_r + js_new
    r_out = side.head_r + side.hip_space
    fill = _smoothstep(r_in - 0.4, r_in + 0.4, rho) * (1 - _smoothstep(r_out + 0.5, r_out + 1.5, rho))
    out = MU_TRAB * 3.0 * fill * roof_w + MU_CORT * 1.8 * np.clip(1 - np.abs(rho - r_in - 1.0) / 1.2, 0, 1) * roof_w
    scl = np.exp(-np.maximum(rho - r_in, 0) / 4.0) * (rho > r_in) * roof_w
    out += MU_CORT * 0.6 * scl
    # collar osteophyte at the lateral head-neck junction
    ox = h[0] + sg * side.head_r * 0.92; oy = h[1] + side.head_r * 0.42
    ost = np.exp(-0.5 * (((U - ox) / 3.0) ** 2 + ((V - oy) / 4.5) ** 2))
    out += MU_CORT * 2.5 * ost
    r_sup = side.head_r + side.hip_space + HIP_PAD - 2
    win = 1 - _smoothstep(r_sup - 4, r_sup, np.hypot(U - h[0], V - h[1]))
    return (out * win).astype(F)
