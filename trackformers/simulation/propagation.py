"""Helix propagation of charged particles through the layers, vectorised over particles.

Field: uniform ``B`` (T) along +z. A particle of transverse momentum pT (GeV) moves on a circle of radius
``R = pT / (0.2998 * B)`` m; the turning angle ``t`` (rad) parametrises the helix from its current point
``p0`` with transverse direction ``u`` and unit normal ``n`` towards the circle's centre::

    p(t) = p0 + R sin(t) u + 2 R sin²(t/2) n,      z(t) = z0 + R t pz / pT.

Barrel layers are crossed in order of radius and disks in order of |z| during the first half turn (the
particles start next to the beam line), so each particle only needs its *next* cylinder and its *next*
disk plane: every step computes both crossings for all live particles, moves each to the nearer one,
records a hit when the crossing lies inside the layer's active extent, and scatters the direction there
(Highland). A particle stops after half a turn or when no surface is left. The loop runs over steps
(at most the number of cylinders plus disk planes on one side), never over particles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trackformers.simulation.geometry import Layer

#: GeV per (T · mm): R[mm] = pT[GeV] / (C_LIGHT * B[T]).
C_LIGHT = 0.299792458e-3


@dataclass(frozen=True)
class Surfaces:
    """Layers re-arranged for stepping; ``layer`` entries index the ``layers`` tuple given to :func:`build`.

    Cylinders are sorted by radius (``cyl_r`` ends with an ``inf`` sentinel). Disk planes are grouped per
    side (0: -z, 1: +z) and sorted by |z|; several layers of different r ranges may share one plane (the
    pixel and strip disks at |z| = 1500 mm), so each plane holds up to ``S`` sections.
    """

    cyl_r: np.ndarray        # (C+1,) mm
    cyl_layer: np.ndarray    # (C+1,) int64, -1 for the sentinel
    cyl_zlo: np.ndarray      # (C+1,) mm
    cyl_zhi: np.ndarray      # (C+1,) mm
    plane_z: np.ndarray      # (2, P+1) signed mm, ±inf sentinels
    plane_layer: np.ndarray  # (2, P+1, S) int64, -1 where none
    plane_rlo: np.ndarray    # (2, P+1, S) mm
    plane_rhi: np.ndarray    # (2, P+1, S) mm
    x0: np.ndarray           # (L,) x/X0 per layer
    normal_is_z: np.ndarray  # (L,) bool, True for disks


def build(layers: tuple[Layer, ...]) -> Surfaces:
    """Arrange ``layers`` for :func:`propagate`."""
    cyl = sorted((lay.position, i) for i, lay in enumerate(layers) if lay.kind == "barrel")
    cyl_r = np.array([r for r, _ in cyl] + [np.inf])
    cyl_layer = np.array([i for _, i in cyl] + [-1], dtype=np.int64)
    cyl_zlo = np.array([layers[i].lo for _, i in cyl] + [0.0])
    cyl_zhi = np.array([layers[i].hi for _, i in cyl] + [0.0])
    sides: list[dict[float, list[int]]] = [{}, {}]
    for i, lay in enumerate(layers):
        if lay.kind == "disk":
            sides[int(lay.position > 0)].setdefault(abs(lay.position), []).append(i)
    n_planes = max(len(s) for s in sides) + 1
    n_sections = max([len(v) for s in sides for v in s.values()] + [1])
    plane_z = np.empty((2, n_planes))
    plane_z[0], plane_z[1] = -np.inf, np.inf
    plane_layer = np.full((2, n_planes, n_sections), -1, dtype=np.int64)
    plane_rlo = np.full((2, n_planes, n_sections), np.inf)
    plane_rhi = np.full((2, n_planes, n_sections), -np.inf)
    for side, planes in enumerate(sides):
        for k, az in enumerate(sorted(planes)):
            plane_z[side, k] = az if side else -az
            for j, i in enumerate(planes[az]):
                plane_layer[side, k, j] = i
                plane_rlo[side, k, j], plane_rhi[side, k, j] = layers[i].lo, layers[i].hi
    return Surfaces(cyl_r, cyl_layer, cyl_zlo, cyl_zhi, plane_z, plane_layer, plane_rlo, plane_rhi,
                    np.array([lay.x0 for lay in layers]), np.array([lay.kind == "disk" for lay in layers]))


def cylinder_turn(x: np.ndarray, y: np.ndarray, ux: np.ndarray, uy: np.ndarray, nx: np.ndarray,
                  ny: np.ndarray, radius: np.ndarray, r_cyl: np.ndarray) -> np.ndarray:
    """Smallest positive turning angle ``(N,)`` to reach the cylinder ``r_cyl`` (inf if never reached).

    Circle–circle intersection written without cancellation, so it stays exact for straight tracks
    (R of km): ``δ = d - R = (ρ0² + 2 R p0·n) / (d + R)`` with ``d`` the centre's distance to the axis,
    half opening ``sin²(γ/2) = (r² - δ²) / (4 R d)``, and ``ε`` the angle at the centre between the
    start point and the axis.
    """
    b = x * nx + y * ny
    cx, cy = x + radius * nx, y + radius * ny
    d = np.hypot(cx, cy)
    delta = (x * x + y * y + 2 * radius * b) / (d + radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = (r_cyl * r_cyl - delta * delta) / (4 * radius * d)
        gamma = 2 * np.arcsin(np.sqrt(np.clip(s2, 0.0, 1.0)))
    eps = np.arctan2(nx * y - ny * x, b + radius)
    h = np.sign(ux * ny - uy * nx)  # +1 for counter-clockwise motion
    two_pi = 2 * np.pi
    t1 = np.mod(h * (eps + gamma), two_pi)
    t2 = np.mod(h * (eps - gamma), two_pi)
    t = np.minimum(np.where(t1 > 0, t1, two_pi), np.where(t2 > 0, t2, two_pi))
    ok = (s2 >= 0) & (s2 <= 1) & np.isfinite(r_cyl)
    return np.where(ok, t, np.inf)


def propagate(state: dict[str, np.ndarray], surfaces: Surfaces, rng: np.random.Generator, *,
              bfield: float = 2.0, scattering: bool = True) -> dict[str, np.ndarray]:
    """Propagate particles and return their crossings of active layer areas.

    Args:
        state: per particle ``(P,)`` arrays ``x, y, z`` (mm), ``px, py, pz`` (GeV), ``q`` (e), ``mass`` (GeV).
        surfaces: from :func:`build`.
        rng: random generator for multiple scattering (unused when ``scattering`` is False).
        bfield: field along +z, T.
        scattering: apply Highland multiple scattering at each crossing.

    Returns:
        ``(H,)`` arrays ``particle`` (index into the inputs), ``layer`` (index into the layers),
        ``x, y, z`` true position (mm), ``px, py, pz`` momentum arriving at the surface (GeV), in the order
        of the steps (each particle's crossings in the order it made them).
    """
    n = len(state["x"])
    x, y, z = (np.asarray(state[k], dtype=np.float64).copy() for k in ("x", "y", "z"))
    px, py, pz = (np.asarray(state[k], dtype=np.float64).copy() for k in ("px", "py", "pz"))
    q = np.asarray(state["q"], dtype=np.float64)
    mass = np.asarray(state["mass"], dtype=np.float64)
    kb = C_LIGHT * bfield
    h_all = -np.sign(q * bfield)  # turning direction of φ
    side_all = (pz > 0).astype(np.int64)
    next_cyl = np.zeros(n, dtype=np.int64)
    next_plane = np.zeros(n, dtype=np.int64)
    turned = np.zeros(n)
    live = np.flatnonzero((q != 0) & (np.hypot(px, py) > 0))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("particle", "layer", "x", "y", "z", "px", "py", "pz")}
    max_steps = len(surfaces.cyl_r) + surfaces.plane_z.shape[1]
    for _ in range(max_steps):
        if live.size == 0:
            break
        a = live
        xa, ya, za, pxa, pya, pza, ha = x[a], y[a], z[a], px[a], py[a], pz[a], h_all[a]
        pt = np.hypot(pxa, pya)
        radius = pt / kb
        ux, uy = pxa / pt, pya / pt
        nx, ny = -ha * uy, ha * ux
        ic, ip, side = next_cyl[a], next_plane[a], side_all[a]
        t_cyl = cylinder_turn(xa, ya, ux, uy, nx, ny, radius, surfaces.cyl_r[ic])
        zp = surfaces.plane_z[side, ip]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_plane = (zp - za) * kb / pza
        t_plane = np.where(np.isfinite(t_plane) & (t_plane > 0), t_plane, np.inf)
        is_cyl = t_cyl <= t_plane
        t = np.where(is_cyl, t_cyl, t_plane)
        go = np.isfinite(t) & (turned[a] + t <= np.pi)
        a, t, is_cyl = a[go], t[go], is_cyl[go]
        xa, ya, za, pxa, pya, pza = xa[go], ya[go], za[go], pxa[go], pya[go], pza[go]
        radius, ux, uy, nx, ny, ha, pt = radius[go], ux[go], uy[go], nx[go], ny[go], ha[go], pt[go]
        ic, ip, side, zp = ic[go], ip[go], side[go], zp[go]
        # Move to the crossing.
        st, s_half = np.sin(t), np.sin(0.5 * t)
        bend = 2 * radius * s_half * s_half
        xn = xa + radius * st * ux + bend * nx
        yn = ya + radius * st * uy + bend * ny
        zn = np.where(is_cyl, za + radius * t * pza / pt, zp)
        ct, sh = np.cos(t), ha * st
        pxn, pyn = pxa * ct - pya * sh, pxa * sh + pya * ct
        # Which layer (if any) was crossed inside its active area.
        layer = np.full(len(a), -1, dtype=np.int64)
        cl = surfaces.cyl_layer[ic]
        inside = is_cyl & (zn >= surfaces.cyl_zlo[ic]) & (zn <= surfaces.cyl_zhi[ic])
        layer[inside] = cl[inside]
        rn = np.hypot(xn, yn)
        for j in range(surfaces.plane_layer.shape[2]):
            sec = ~is_cyl & (rn >= surfaces.plane_rlo[side, ip, j]) & (rn <= surfaces.plane_rhi[side, ip, j])
            layer[sec] = surfaces.plane_layer[side, ip, j][sec]
        hit = layer >= 0
        for key, val in (("particle", a[hit]), ("layer", layer[hit]), ("x", xn[hit]), ("y", yn[hit]),
                         ("z", zn[hit]), ("px", pxn[hit]), ("py", pyn[hit]), ("pz", pza[hit])):
            out[key].append(val)
        pzn = pza
        if scattering and hit.any():
            pxn, pyn, pzn = _scatter(pxn, pyn, pza, xn, yn, rn, hit, layer, mass[a], surfaces, rng)
        x[a], y[a], z[a], px[a], py[a], pz[a] = xn, yn, zn, pxn, pyn, pzn
        turned[a] += t
        next_cyl[a] += is_cyl
        next_plane[a] += ~is_cyl
        live = a
    return {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64 if k in ("particle", "layer")
                                                     else np.float64)) for k, v in out.items()}


def _scatter(px: np.ndarray, py: np.ndarray, pz: np.ndarray, x: np.ndarray, y: np.ndarray, r: np.ndarray,
             hit: np.ndarray, layer: np.ndarray, mass: np.ndarray, surfaces: Surfaces,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Highland multiple scattering of the particles that crossed material (``hit``); returns new momenta."""
    px, py, pz = px.copy(), py.copy(), pz.copy()
    i = np.flatnonzero(hit)
    lay = layer[i]
    p = np.sqrt(px[i] ** 2 + py[i] ** 2 + pz[i] ** 2)
    dx, dy, dz = px[i] / p, py[i] / p, pz[i] / p
    # |cos| of the incidence angle to the surface normal: z for disks, radial for cylinders.
    cos_inc = np.where(surfaces.normal_is_z[lay], np.abs(dz), np.abs(dx * x[i] + dy * y[i]) / r[i])
    thick = surfaces.x0[lay] / np.maximum(cos_inc, 1e-3)
    beta = p / np.sqrt(p * p + mass[i] ** 2)
    theta0 = 0.0136 / (beta * p) * np.sqrt(thick) * (1 + 0.038 * np.log(thick))
    g = rng.standard_normal((2, len(i))) * theta0
    s = np.hypot(dx, dy)
    # e1: transverse, perpendicular to the direction; e2 = d × e1.
    e1x, e1y = -dy / s, dx / s
    e2x, e2y, e2z = -dz * dx / s, -dz * dy / s, s
    t1, t2 = np.tan(g[0]), np.tan(g[1])
    nx_, ny_, nz_ = dx + t1 * e1x + t2 * e2x, dy + t1 * e1y + t2 * e2y, dz + t2 * e2z
    norm = p / np.sqrt(nx_ * nx_ + ny_ * ny_ + nz_ * nz_)
    px[i], py[i], pz[i] = nx_ * norm, ny_ * norm, nz_ * norm
    return px, py, pz
