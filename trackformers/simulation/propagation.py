"""Helix propagation of charged particles through the layers, vectorised over particles.

Field: uniform ``B`` (T) along +z. A particle of transverse momentum pT (GeV) moves on a circle of radius
``R = pT / (0.2998 * B)`` m; the turning angle ``t`` (rad) parametrises the helix from its current point
``p0`` with transverse direction ``u`` and unit normal ``n`` towards the circle's centre::

    p(t) = p0 + R sin(t) u + 2 R sin²(t/2) n,      z(t) = z0 + R t pz / pT.

Barrel layers are crossed in order of radius and disks in order of |z| during the first half turn (the
particles start next to the beam line), so each particle only needs its *next* cylinder and its *next*
disk plane: every step computes both crossings for all live particles, moves each to the nearer one,
records a hit when the crossing lies inside the layer's active extent, and scatters the direction there
(Highland). A particle stops after half a turn, when no surface is left, or once it is past the
outermost active radius. The loop runs over steps (at most the number of cylinders plus disk planes on
one side), never over particles.
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
    r_outer: float           # no active area beyond this radius, mm


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
    r_outer = max([lay.position if lay.kind == "barrel" else lay.hi for lay in layers] + [0.0])
    return Surfaces(cyl_r, cyl_layer, cyl_zlo, cyl_zhi, plane_z, plane_layer, plane_rlo, plane_rhi,
                    np.array([lay.x0 for lay in layers]), np.array([lay.kind == "disk" for lay in layers]),
                    float(r_outer))


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
    d = np.sqrt(cx * cx + cy * cy)  # sqrt is SIMD in numpy, hypot is not; no overflow at these scales
    delta = (x * x + y * y + 2 * radius * b) / (d + radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = (r_cyl * r_cyl - delta * delta) / (4 * radius * d)
        gamma = 2 * np.arcsin(np.sqrt(np.clip(s2, 0.0, 1.0)))
    eps = np.arctan2(nx * y - ny * x, b + radius)
    h = np.sign(ux * ny - uy * nx)  # +1 for counter-clockwise motion
    two_pi = 2 * np.pi
    # eps, gamma in [-π, π]: the candidates lie in (-2π, 2π); map into (0, 2π].
    t1 = h * (eps + gamma)
    t2 = h * (eps - gamma)
    t1 = np.where(t1 > 0, t1, t1 + two_pi)
    t2 = np.where(t2 > 0, t2, t2 + two_pi)
    t = np.minimum(t1, t2)
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
    kb = C_LIGHT * bfield
    q = np.asarray(state["q"], dtype=np.float64)
    # Live particles only, compacted every step: F holds float rows, I integer rows (one gather each).
    F = np.stack([np.asarray(state[k], dtype=np.float64) for k in ("x", "y", "z", "px", "py", "pz", "mass")]
                 + [-np.sign(q * bfield), np.zeros(len(q))])  # turning direction of φ, turned angle
    I = np.stack([np.arange(len(q)), (F[5] > 0).astype(np.int64), np.zeros(len(q), np.int64),
                  np.zeros(len(q), np.int64)])  # particle, side (pz > 0), next cylinder, next plane
    keep = (q != 0) & (np.hypot(F[3], F[4]) > 0)
    F, I = F[:, keep], I[:, keep]
    records: list[np.ndarray] = []
    layers_hit: list[np.ndarray] = []
    max_steps = len(surfaces.cyl_r) + surfaces.plane_z.shape[1]
    for _ in range(max_steps):
        if F.shape[1] == 0:
            break
        x, y, z, px, py, pz, _, h, turned = F
        side, ic, ip = I[1], I[2], I[3]
        pt = np.sqrt(px * px + py * py)
        radius = pt / kb
        ux, uy = px / pt, py / pt
        t_cyl = cylinder_turn(x, y, ux, uy, -h * uy, h * ux, radius, surfaces.cyl_r[ic])
        with np.errstate(divide="ignore", invalid="ignore"):
            t_plane = (surfaces.plane_z[side, ip] - z) * kb / pz
        t_plane[~(t_plane > 0)] = np.inf  # NaN (pz = 0) and backwards
        is_cyl = t_cyl <= t_plane
        t = np.where(is_cyl, t_cyl, t_plane)
        go = turned + t <= np.pi  # False for inf: no surface left, or beyond half a turn
        if not go.all():
            F, I, t, is_cyl = F[:, go], I[:, go], t[go], is_cyl[go]
            x, y, z, px, py, pz, mass, h, turned = F
            side, ic, ip = I[1], I[2], I[3]
            pt = np.sqrt(px * px + py * py)
            radius = pt / kb
            ux, uy = px / pt, py / pt
        mass = F[6]
        # Move to the crossing.
        st, s_half = np.sin(t), np.sin(0.5 * t)
        bend = 2 * radius * s_half * s_half  # R (1 - cos t), without cancellation
        xn = x + radius * st * ux - bend * h * uy
        yn = y + radius * st * uy + bend * h * ux
        zn = np.where(is_cyl, z + radius * t * pz / pt, surfaces.plane_z[side, ip])
        ct, sh = 1 - 2 * s_half * s_half, h * st
        pxn, pyn = px * ct - py * sh, px * sh + py * ct
        # Which layer (if any) was crossed inside its active area.
        layer = np.where(is_cyl & (zn >= surfaces.cyl_zlo[ic]) & (zn <= surfaces.cyl_zhi[ic]),
                         surfaces.cyl_layer[ic], -1)
        rn = np.sqrt(xn * xn + yn * yn)
        disk = ~is_cyl
        for j in range(surfaces.plane_layer.shape[2]):
            sec = disk & (rn >= surfaces.plane_rlo[side, ip, j]) & (rn <= surfaces.plane_rhi[side, ip, j])
            layer = np.where(sec, surfaces.plane_layer[side, ip, j], layer)
        hit = layer >= 0
        new = np.stack([xn, yn, zn, pxn, pyn, pz])
        records.append(np.concatenate([I[0][hit][None].astype(np.float64), new[:, hit]]))
        layers_hit.append(layer[hit])
        if scattering and hit.any():
            new[3], new[4], new[5] = _scatter(pxn, pyn, pz, xn, yn, rn, hit, layer, mass, surfaces, rng)
        F[:6] = new
        # Radius only grows during the first half turn: past the outermost active radius nothing is left
        # (an infinite turned angle retires the particle at the next step).
        F[8] += np.where(rn < surfaces.r_outer - 1e-6, t, np.inf)
        I[2] += is_cyl
        I[3] += disk
    rec = np.concatenate(records, axis=1) if records else np.zeros((7, 0))
    out = {"particle": rec[0].astype(np.int64),
           "layer": np.concatenate(layers_hit) if layers_hit else np.zeros(0, dtype=np.int64)}
    out.update(zip(("x", "y", "z", "px", "py", "pz"), rec[1:], strict=True))
    return out


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
    s = np.sqrt(dx * dx + dy * dy)
    # e1: transverse, perpendicular to the direction; e2 = d × e1.
    e1x, e1y = -dy / s, dx / s
    e2x, e2y, e2z = -dz * dx / s, -dz * dy / s, s
    # Projected angles θ1, θ2 (θ0 is almost always far below 0.1 rad, where tan θ = θ to 0.3%).
    t1, t2 = g[0], g[1]
    nx_, ny_, nz_ = dx + t1 * e1x + t2 * e2x, dy + t1 * e1y + t2 * e2y, dz + t2 * e2z
    norm = p / np.sqrt(nx_ * nx_ + ny_ * ny_ + nz_ * nz_)
    px[i], py[i], pz[i] = nx_ * norm, ny_ * norm, nz_ * norm
    return px, py, pz
