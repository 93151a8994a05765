"""One event through ACTS Fatras (pyacts 48): the GenericDetector, a constant field, CSV hand-over.

The particles go in as an ACTS particle CSV (``CsvParticleReader``) and the sim hits and simulated particles
come back through ACTS's ``CsvSimHitWriter`` / ``CsvParticleWriter``, all in a scratch folder. A Python
algorithm copying the hits off the event store was tried: ~10% faster, but with pyacts 48.1 every access to
a hit's ``geometryId`` or ``particleId`` from Python leaked memory (~0.7 MB per μ = 20 event), so the files
stay. Units: mm, ns, GeV, T.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

#: Objects that must outlive the cached tracking geometry (the detector owns its surfaces).
_KEEP_ALIVE: list = []


@lru_cache(maxsize=4)
def geometry(bfield: float) -> tuple[Any, Any, list]:
    """(tracking geometry, field, context decorators) of the GenericDetector, built once per process."""
    import acts
    import acts.examples

    quiet = acts.logging.WARNING
    detector = acts.examples.GenericDetector(logLevel=quiet, layerLogLevel=quiet, surfaceLogLevel=quiet,
                                             volumeLogLevel=quiet)
    _KEEP_ALIVE.append(detector)  # the detector owns the surfaces the tracking geometry points to
    field = acts.ConstantBField(acts.Vector3(0.0, 0.0, bfield * acts.UnitConstants.T))
    return detector.trackingGeometry(), field, list(detector.contextDecorators())


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Plain CSV for ACTS's readers: an unquoted header, then pyarrow's rows (10x faster than pandas)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    with open(path, "wb") as f:
        f.write((",".join(table.columns) + "\n").encode())
        pa_csv.write_csv(pa.Table.from_pandas(table, preserve_index=False), f,
                         pa_csv.WriteOptions(include_header=False, quoting_style="none"))


def run(particles: pd.DataFrame, *, seed: int, bfield: float, interactions: bool, p_min: float,
        workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate one event; returns (sim hits, secondary particles) in ACTS's CSV column layout.

    Args:
        particles: ACTS particle CSV rows (see ``acts.particles_csv``).
        seed: Fatras's random seed.
        bfield: field along +z, T.
        interactions: Fatras's scattering, energy loss and photon conversion.
        p_min: particles below this momentum (GeV) are not simulated.
        workdir: an empty scratch folder for the CSV files (and the sequencer's timing files).
    """
    import acts
    import acts.examples
    from acts.examples.simulation import addFatras

    tracking, field, decorators = geometry(bfield)
    out = workdir / "out"
    (workdir / "in").mkdir()
    write_csv(particles, workdir / "in" / "event000000000-particles.csv")
    quiet = acts.logging.WARNING
    s = acts.examples.Sequencer(events=1, numThreads=1, outputDir=str(workdir), trackFpes=False,
                                logLevel=quiet)
    for d in decorators:
        s.addContextDecorator(d)
    s.addReader(acts.examples.CsvParticleReader(level=quiet, inputDir=str(workdir / "in"),
                                                inputStem="particles", outputParticles="particles_input"))
    # pMin: Fatras's default (0.5 GeV) drops every particle below 0.5 GeV (~a quarter of a minimum-bias event).
    addFatras(s, tracking, field, rnd=acts.examples.RandomNumbers(seed=seed), enableInteractions=interactions,
              pMin=p_min * acts.UnitConstants.GeV, inputParticles="particles_input",
              outputDirCsv=out, logLevel=quiet)
    s.run()
    hits = pd.read_csv(out / "event000000000-hits.csv")
    sim = pd.read_csv(out / "event000000000-particles_simulated.csv")
    return hits, sim[sim["particle_id_gen"] > 0].reset_index(drop=True)
