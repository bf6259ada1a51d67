"""Anatomy of the phantom AP pelvis: shape parameters and the projected attenuation map (private).

Everything here is drawn from the *anatomy* random stream only, so it is identical for the same
seed whatever the sacroiliitis grades, mimic or hip involvement are. Attenuation is in natural-log
units (line integral of the linear attenuation coefficient): soft tissue ``MU_SOFT`` per mm, and
bone as an excess over the soft tissue it displaces (trabecular ``MU_TRAB``, cortical ``MU_CORT``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._canvas import F, Canvas, bandpass_noise, capsule_D, catmull_rom_closed, chord, ellipse_D, shell

MU_SOFT = 0.020   # per mm of soft tissue
MU_TRAB = 0.0065  # excess per mm of trabecular bone
MU_CORT = 0.024   # excess per mm of cortical bone


@dataclass
class Side:
    """Per-side geometry (``sign`` = +1 for image right = patient left)."""

    sign: int
    j_top: np.ndarray        # SI joint, upper end of the centre line (S1 level)
    j_bot: np.ndarray        # lower end (S3 level)
    bulge: float             # lateral bow of the joint (mm)
    off_ant: tuple[float, float]   # anterior (lateral) line offset at top / bottom (mm)
    off_post: tuple[float, float]  # posterior (medial) line offset at top / bottom (mm)
    joint_width: float       # normal joint space (mm)
    head: np.ndarray         # femoral head centre
    head_r: float
    hip_space: float         # normal hip joint space (mm)
    ilium: np.ndarray        # outline control points
    wing_scale: float

    def joint_point(self, s: float, n: float = 0.0) -> np.ndarray:
        """A point of the joint frame: along-joint ``s`` (0 top .. 1 bottom), lateral offset ``n`` mm."""
        e, nh, L = self.frame()
        return self.j_top + s * L * e + (n + self.bulge * 4 * s * (1 - s)) * nh

    def frame(self) -> tuple[np.ndarray, np.ndarray, float]:
        d = self.j_bot - self.j_top
        L = float(np.hypot(*d))
        e = d / L
        nh = np.array([-e[1], e[0]])
        if nh[0] * self.sign < 0:
            nh = -nh
        return e, nh, L

    def ant(self, s):
        return self.off_ant[0] * (1 - s) + self.off_ant[1] * s

    def post(self, s):
        return self.off_post[0] * (1 - s) + self.off_post[1] * s


@dataclass
class Anatomy:
    """Shape parameters of one phantom patient."""

    sex: str
    scale: float
    habitus: float               # 0 slim .. 1 large
    trunk_hw: float
    trunk_depth: float
    thigh_r: float
    rot: float                   # axial rotation (-1..1)
    tilt: float                  # pelvic tilt (-1..1)
    angle: float                 # in-plane rotation (rad)
    shift: tuple[float, float]   # positioning offset (mm)
    sides: tuple[Side, Side]
    sacrum: np.ndarray           # outline control points
    mid_x: float                 # midline shift from axial rotation
    gas: list = field(default_factory=list)
    tex_seed: int = 0


def _j(rng, s=2.0, n=None):
    return rng.normal(0.0, s, n)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw sex, habitus, pose and bone shapes from the anatomy stream."""
    male = rng.random() < 0.55
    sex = "M" if male else "F"
    scale = float(np.clip(rng.normal(1.0 if male else 0.95, 0.045), 0.85, 1.12))
    habitus = float(np.clip(rng.beta(2.2, 2.2), 0, 1))
    trunk_hw = 150 + 70 * habitus + _j(rng, 6)
    trunk_depth = 170 + 130 * habitus + _j(rng, 10)
    thigh_r = 72 + 35 * habitus + _j(rng, 4)
    rot = float(np.clip(rng.normal(0, 0.4), -1, 1))
    tilt = float(np.clip(rng.normal(0, 0.4), -1, 1))
    angle = float(np.deg2rad(rng.normal(0, 1.8)))
    shift = (float(_j(rng, 6)), float(_j(rng, 8)))
    mid_x = 5.0 * rot
    flare = 1.0 if male else 1.07      # female iliac wings flare more
    height = 1.0 if male else 0.93     # and are lower
    sides = []
    for sign in (-1, 1):
        ws = float(1 + 0.05 * rot * sign + _j(rng, 0.02))
        jt = np.array([sign * (49 + _j(rng, 2.0)) + mid_x, -97 * height + _j(rng, 2.5)])
        jb = np.array([sign * (37 + _j(rng, 1.8)) + mid_x, -39 + _j(rng, 2.5)])
        head_r = float((24.0 if male else 21.5) + _j(rng, 0.8))
        head = np.array([sign * (95 * flare * ws + _j(rng, 1.5)), 2 + _j(rng, 1.5)])
        pts = np.array([
            (50, -118), (60, -140), (84, -158), (112, -164), (136, -152), (149, -128),
            (153, -102), (141, -82), (142, -62), (134, -40), (128, -20), (124, -8),
            (110, 14), (92, 24), (72, 22), (62, 6), (54, -14)], dtype=float)
        pts[:, 0] = pts[:, 0] * flare * ws
        pts[:, 1] = np.where(pts[:, 1] < -20, pts[:, 1] * height, pts[:, 1])
        pts += rng.normal(0, 1.8, pts.shape)
        # the lower acetabular points follow the femoral head
        pts[10:14, 0] += head[0] * sign - 95 * flare * ws
        pts[:, 0] *= sign
        side = Side(
            sign=sign, j_top=jt, j_bot=jb, bulge=float(4.5 + _j(rng, 0.8)),
            off_ant=(float(5.5 + _j(rng, 0.6)), float(1.3 + _j(rng, 0.3))),
            off_post=(float(4.0 + _j(rng, 0.5)), float(0.9 + _j(rng, 0.2))),
            joint_width=float(np.clip(3.0 + _j(rng, 0.35), 2.2, 3.9)),
            head=head, head_r=head_r, hip_space=float(np.clip(4.3 + _j(rng, 0.4), 3.4, 5.2)),
            ilium=pts, wing_scale=ws)
        sides.append(side)
    sacrum = np.array([
        (0, -103), (22, -103), (40, -101), (54, -99), (-1, -1), (34, -26), (23, -6), (12, 9), (0, 14)],
        dtype=float)
    sacrum[:, 1] = np.where(sacrum[:, 1] < -50, sacrum[:, 1] * height, sacrum[:, 1])
    gas = []
    for _ in range(int(rng.poisson(3.5)) + 1):
        gas.append(dict(
            cx=float(rng.uniform(-125, 125)), cy=float(rng.uniform(-185, 15)),
            a=float(rng.uniform(7, 28)), b=float(rng.uniform(5, 16)), th=float(rng.uniform(0, np.pi)),
            depth=float(rng.uniform(8, 32)), mottle=float(rng.uniform(0.0, 0.6))))
    return Anatomy(sex=sex, scale=scale, habitus=habitus, trunk_hw=float(trunk_hw),
                   trunk_depth=float(trunk_depth), thigh_r=float(thigh_r), rot=rot, tilt=tilt, angle=angle,
                   shift=shift, sides=tuple(sides), sacrum=sacrum, mid_x=mid_x, gas=gas,
                   tex_seed=int(rng.integers(0, 2**31 - 1)))


def _sacrum_outline(an: Anatomy) -> np.ndarray:
    """Sacrum outline: the upper contour, both lateral (anterior joint) lines, and the apex."""
    left, right = an.sides
    pts = []
    base = an.sacrum.copy()
    top = [p for p in base[:4]]
    lower = [p for p in base[5:]]
    # right half (sign +1) clockwise from the promontory
    for p in top:
        pts.append((p[0] + an.mid_x, p[1]))
    for s in np.linspace(0.0, 1.0, 7):
        q = right.joint_point(s, right.ant(s))
        pts.append(tuple(q))
    for p in lower[:-1]:
        pts.append((p[0] + an.mid_x, p[1] + 8 * an.tilt * (p[1] > -20)))
    pts.append((an.mid_x, lower[-1][1] + 8 * an.tilt))
    for p in reversed(lower[:-1]):
        pts.append((-p[0] + an.mid_x, p[1] + 8 * an.tilt * (p[1] > -20)))
    for s in np.linspace(1.0, 0.0, 7):
        q = left.joint_point(s, left.ant(s))
        pts.append(tuple(q))
    for p in reversed(top[1:]):
        pts.append((-p[0] + an.mid_x, p[1]))
    return np.array(pts)


def _ilium_outline(side: Side) -> np.ndarray:
    """Ilium + acetabulum outline, closed along the posterior SI joint line."""
    pts = [tuple(side.joint_point(0.0, -side.post(0.0)) + np.array([0, -4]))]
    pts += [tuple(p) for p in side.ilium]
    for s in np.linspace(1.0, 0.0, 6):
        pts.append(tuple(side.joint_point(s, -side.post(s))))
    return np.array(pts)


def _add_bone(A, box, outer, inner, tex, trab_scale: float = 1.0, cort=None):
    r0, r1, c0, c1 = box
    c = outer - inner if cort is None else (outer - inner) * cort
    A[r0:r1, c0:c1] += (MU_TRAB * trab_scale) * inner * tex[r0:r1, c0:c1] + MU_CORT * c


def _joint_cortex_factor(cv: Canvas, box, sides) -> np.ndarray:
    """Weakens the tangential cortex of sacrum and ilium along the SI joints.

    The joint's own margins are drawn by the joint renderer; without this, the polygon edges would
    draw a grade-independent bright line there that no lesion could change.
    """
    U, V = cv.uv(box)
    f = np.ones(U.shape, F)
    for side in sides:
        e, nh, L = side.frame()
        dx = U - side.j_top[0]; dy = V - side.j_top[1]
        s = (dx * e[0] + dy * e[1]) / L
        n = dx * nh[0] + dy * nh[1] - side.bulge * 4 * s * (1 - s)
        along = np.clip(1.0 - np.maximum(np.abs(s - 0.5) - 0.5, 0) / 0.1, 0, 1)
        f *= 1.0 - 0.9 * along * np.exp(-0.5 * (n / 9.0) ** 2)
    return f


def render_attenuation(cv: Canvas, an: Anatomy) -> np.ndarray:
    """The lesion-free attenuation map (soft tissue, gas, bones) on the canvas."""
    n = cv.size
    rng = np.random.default_rng(an.tex_seed)
    ps = cv.mm_per_px
    tex = bandpass_noise(rng, (n, n), max(0.6, 1.1 / ps), max(1.8, 4.0 / ps))
    tex = 1.0 + 0.16 * tex
    full = (0, n, 0, n)
    U, V = cv.uv(full)
    # soft tissue envelope: trunk above, two thighs below the perineum
    hw = an.trunk_hw + 18.0 / (1.0 + np.exp(-(V + 20.0) / 25.0))
    xr = np.clip(U / hw, -1.0, 1.0)
    trunk = an.trunk_depth * np.sqrt(1.0 - xr * xr)
    w = np.clip((V - 45.0) / 70.0, 0.0, 1.0)
    tc = 0.8 * an.thigh_r
    tr = an.thigh_r
    th = np.maximum(chord(tr - np.abs(U - tc), tr), chord(tr - np.abs(U + tc), tr)) * (an.trunk_depth / (2 * tr)) ** 0.5
    soft = (1.0 - w) * trunk + w * th
    A = (MU_SOFT * soft).astype(F)
    # bowel gas (less soft tissue in the beam), with mottled stool
    for g in an.gas:
        gb = cv.box_for(np.array([[g["cx"] - 30, g["cy"] - 30], [g["cx"] + 30, g["cy"] + 30]]))
        if gb is None:
            continue
        Ug, Vg = cv.uv(gb)
        D = ellipse_D(Ug, Vg, g["cx"], g["cy"], g["a"], g["b"], g["th"], p=2.4)
        prof = np.clip(D / 6.0, 0, 1)
        r0, r1, c0, c1 = gb
        mott = 1.0 - g["mottle"] * np.clip(tex[r0:r1, c0:c1] - 0.6, 0, 1)
        A[r0:r1, c0:c1] -= MU_SOFT * g["depth"] * prof * mott
    # lumbar vertebrae L5 and L4
    for cy, hwv, tp_r, tp_dy in ((-124.0, 26.0, 6.5, 3.0), (-160.0, 24.5, 4.5, -3.0)):
        cx = an.mid_x
        b = cv.box_for(np.array([[cx - 58, cy - 20], [cx + 58, cy + 26]]))
        if b is None:
            continue
        Ub, Vb = cv.uv(b)
        D = ellipse_D(Ub, Vb, cx, cy, hwv, 13.5, 0.0, p=4.5)
        o, i = shell(D, 12.0, 1.4)
        _add_bone(A, b, o, i, tex, 0.8)
        for sg in (-1, 1):
            Dp = ellipse_D(Ub, Vb, cx + sg * 15.5, cy - 4, 5.2, 7.5)
            o, i = shell(Dp, 4.0, 1.7)
            _add_bone(A, b, o, i, tex)
            Dt = capsule_D(Ub, Vb, (cx + sg * 22, cy - 2), (cx + sg * 44, cy + tp_dy - 4), tp_r)
            o, i = shell(Dt, tp_r, 1.2)
            _add_bone(A, b, o, i, tex)
        Ds = ellipse_D(Ub, Vb, cx, cy + 9, 4.5, 11.0)
        o, i = shell(Ds, 5.0, 1.5)
        _add_bone(A, b, o, i, tex)
    # sacrum with foramina, S1 body, coccyx
    sac = catmull_rom_closed(_sacrum_outline(an), 8)
    b = cv.box_for(sac, 3)
    if b is not None:
        D = cv.polygon_D(b, sac)
        o, i = shell(D, 13.0, 1.4)
        _add_bone(A, b, o, i, tex, 0.85, cort=_joint_cortex_factor(cv, b, an.sides))
        Ub, Vb = cv.uv(b)
        r0, r1, c0, c1 = b
        for k in range(4):
            fy = -80 + 17 * k + 6 * an.tilt * k / 3
            fx = 20.5 - 2.2 * k
            for sg in (-1, 1):
                Df = ellipse_D(Ub, Vb, an.mid_x + sg * fx, fy, 5.0 - 0.4 * k, 4.2 - 0.3 * k)
                A[r0:r1, c0:c1] -= MU_TRAB * 1.4 * chord(Df, 5.0)
                Da = ellipse_D(Ub, Vb, an.mid_x + sg * fx, fy + 2.5, 8.0 - 0.6 * k, 8.0 - 0.5 * k)
                arc = np.clip(1.0 - np.abs(Da) / 0.9, 0, 1) * (Vb < fy)
                A[r0:r1, c0:c1] += MU_CORT * 2.2 * arc
        Dm = capsule_D(Ub, Vb, (an.mid_x, -86), (an.mid_x, -5), 3.0)
        A[r0:r1, c0:c1] += MU_CORT * 0.25 * chord(Dm, 3.0)
    for (y0, y1, r) in ((17.0, 26.0, 5.0), (29.0, 36.0, 4.0), (39.0, 44.0, 3.0)):
        p0 = (an.mid_x, y0 + 8 * an.tilt); p1 = (an.mid_x + 0.8, y1 + 8 * an.tilt)
        b = cv.box_for(np.array([p0, p1]), r + 2)
        if b is not None:
            Ub, Vb = cv.uv(b)
            o, i = shell(capsule_D(Ub, Vb, p0, p1, r), r, 1.0)
            _add_bone(A, b, o, i, tex)
    for side in an.sides:
        _render_hemipelvis(A, cv, an, side, tex)
        _render_femur(A, cv, side, tex)
    return A


def _render_hemipelvis(A, cv: Canvas, an: Anatomy, side: Side, tex) -> None:
    sg = side.sign
    il = catmull_rom_closed(_ilium_outline(side), 8)
    b = cv.box_for(il, 3)
    if b is None:
        return
    D = cv.polygon_D(b, il)
    Ub, Vb = cv.uv(b)
    # plate-like wing (thin iliac fossa), thicker body above the acetabulum
    h = side.head
    thick = 5.0 + 9.0 * np.exp(-(((Ub - h[0] * 0.93) / 28.0) ** 2 + ((Vb + 22.0) / 30.0) ** 2))
    thick += 8.0 * np.exp(-(((Ub - sg * 62.0) / 20.0) ** 2 + ((Vb + 80.0) / 35.0) ** 2))
    o, i = shell(D, thick, 2.2)
    _add_bone(A, b, o, i, tex, cort=_joint_cortex_factor(cv, b, (side,)))
    # pubis, rami and ischium; the obturator foramen is the gap between them
    mx = an.mid_x
    ty = 7.0 * an.tilt
    fw = 1.0 + 0.06 * an.rot * sg
    parts = [
        ((sg * 90, 18), (mx + sg * 15, 36 + ty), 10.5, 7.0),
        ((sg * 96, 22), (sg * 82, 78 + ty), 14.0, 9.0),
        ((mx + sg * 13, 56 + ty), (sg * 60 * fw, 90 + ty), 7.0, 5.0),
        ((sg * 60 * fw, 90 + ty), (sg * 80, 84 + ty), 12.0, 8.0),
    ]
    pts = np.array([p for part in parts for p in part[:2]] + [(mx + sg * 3, 30 + ty), (mx + sg * 24, 64 + ty)])
    b = cv.box_for(pts, 16)
    if b is None:
        return
    Ub, Vb = cv.uv(b)
    outer = np.zeros(Ub.shape, F); inner = np.zeros(Ub.shape, F)
    for a, c, r, R in parts:
        D = capsule_D(Ub, Vb, a, c, r)
        o, i = shell(D, R, 1.3)
        np.maximum(outer, o, out=outer); np.maximum(inner, i, out=inner)
    D = ellipse_D(Ub, Vb, mx + sg * 13.5, 46 + ty, 11.0, 17.0, 0.15 * sg)
    o, i = shell(D, 11.0, 1.4)
    np.maximum(outer, o, out=outer); np.maximum(inner, i, out=inner)
    _add_bone(A, b, outer, inner, tex)
    # acetabular roof (sourcil), joint space and teardrop
    hb = cv.box_for(np.array([h - (side.head_r + 14), h + (side.head_r + 14)]))
    if hb is None:
        return
    Uh, Vh = cv.uv(hb)
    rho = np.hypot(Uh - h[0], Vh - h[1])
    ang = np.arctan2(Vh - h[1], (Uh - h[0]) * sg)  # 0 = lateral, -pi/2 = up
    roof_w = np.clip(1.0 - np.abs(ang + np.pi * 0.52) / (np.pi * 0.42), 0, 1) ** 0.6
    r_roof = side.head_r + side.hip_space
    roof = np.clip(1.0 - np.abs(rho - (r_roof + 1.6)) / 1.7, 0, 1) * roof_w
    r0, r1, c0, c1 = hb
    A[r0:r1, c0:c1] += MU_CORT * 7.0 * roof
    gap = np.clip(1 - np.abs(rho - (side.head_r + side.hip_space / 2)) / (side.hip_space / 2), 0, 1) * roof_w
    A[r0:r1, c0:c1] -= MU_TRAB * 3.0 * gap
    Dt = ellipse_D(Uh, Vh, h[0] - sg * (side.head_r + 6), h[1] + 16, 4.0, 9.0, 0.2 * sg)
    tear = np.clip(1.0 - np.abs(Dt) / 0.8, 0, 1)
    A[r0:r1, c0:c1] += MU_CORT * 2.0 * tear


def _render_femur(A, cv: Canvas, side: Side, tex) -> None:
    sg = side.sign
    h = side.head
    hr = side.head_r
    neck_end = h + np.array([sg * 38, 28])
    parts = [  # (kind, params, R, cortex)
        ("caps", (tuple(h), tuple(h), hr), hr, 1.2),
        ("caps", (tuple(h), tuple(neck_end), 0.68 * hr), 0.6 * hr, 1.6),
        ("ell", (h[0] + sg * 54, h[1] + 24, 14.0, 21.0, 0.3 * sg), 16.0, 1.4),
        ("caps", (tuple(h + np.array([sg * 42, 30])), tuple(h + np.array([sg * 35, 78])), 0.72 * hr), 0.72 * hr, 1.8),
        ("ell", (h[0] + sg * 19, h[1] + 70, 8.0, 6.0, 0.6 * sg), 6.0, 1.2),
        ("caps", (tuple(h + np.array([sg * 35, 72])), tuple(h + np.array([sg * 24, 300])), 0.6 * hr), 0.6 * hr, 5.0),
    ]
    b = cv.box_for(np.array([h - hr - 4, h + np.array([sg * 70, 300.0]), h + np.array([-sg * 20, 0])]), 4)
    if b is None:
        return
    Ub, Vb = cv.uv(b)
    outer = np.zeros(Ub.shape, F); inner = np.zeros(Ub.shape, F)
    for kind, p, R, c in parts:
        D = capsule_D(Ub, Vb, p[0], p[1], p[2]) if kind == "caps" else ellipse_D(Ub, Vb, *p)
        o, i = shell(D, R, c)
        np.maximum(outer, o, out=outer); np.maximum(inner, i, out=inner)
    _add_bone(A, b, outer, inner, tex)
