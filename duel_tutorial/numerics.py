"""Floating-point numerics: the settings the book is recorded under, and this process's.

The same code and seed give different floating-point results on different processors:
MKL, oneDNN and torch's own kernels pick AVX2, AVX-512 or AMX code by CPU, numpy and
OpenBLAS do the same, and the number of threads changes how sums are split. Training
amplifies a difference in the last bit into a different run. So the book's stored
outputs, and the committed runs a chapter compares itself with exactly, are recorded
under :data:`REFERENCE`: MKL at its vendor-neutral COMPATIBLE branch, the other libraries
capped at their AVX2 code paths, one thread, no GPU. Any x86-64 CPU with AVX2 (nearly
every one since 2013, Intel or AMD) then computes the same bits.

MKL honours a named instruction-set branch (``MKL_CBWR=AVX2``) only on Intel processors;
elsewhere it falls back, without a warning, to its automatic branch, whose results depend
on the processor. COMPATIBLE (SSE2 without the approximate reciprocal instructions, whose
results differ between vendors) is the one branch it honours on every x86-64 CPU. An AMD
EPYC running ``MKL_CBWR=AVX2`` reported ``CNR:AUTO`` in MKL's verbose log, and its CartPole
run (chapter 8's preset, seed 0) parted from the one recorded on an Intel Xeon after 95
episodes, at step 2,584.

    python scripts/numerics.py reference -- make notebooks   # how CI sets them

A chapter asserts equality with a committed run only where :func:`same_numerics` says
this process computes as that run's did; elsewhere it checks a tolerance.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

# Environment variables, read once when each library loads (so set them before Python
# starts). Values a library does not know, e.g. numpy 1.x's other feature names, are
# ignored by it.
REFERENCE: dict[str, str] = {
    # MKL's conditional numerical reproducibility, at the one branch that every x86-64
    # CPU runs alike (AVX2 and the others are honoured on Intel CPUs only)
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions): no AVX-512, no AMX kernels
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's AVX-512 loops
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS (numpy's BLAS): its AVX2 kernels
    "OMP_NUM_THREADS": "1",  # one thread: how a sum is split never changes
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",  # the CPU, even where a GPU is present
}


def numerics() -> dict[str, Any]:
    """This process's numerics: each :data:`REFERENCE` variable as the environment has it
    (``None`` where unset), torch's CPU kernel level, the machine, torch and numpy.

    Committed results store this in their provenance, so a later run can tell whether it
    should reproduce them bit for bit (:func:`same_numerics`).
    """
    return {
        "env": {key: os.environ.get(key) for key in REFERENCE},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def is_reference() -> bool:
    """Whether this process runs under the book's reference numerics on an x86-64 CPU."""
    now = numerics()
    return (now["env"] == REFERENCE and now["cpu_capability"] == "AVX2"
            and now["machine"] in ("x86_64", "AMD64"))


def same_numerics(recorded: dict[str, Any] | None) -> bool:
    """Whether this process computes as the one that recorded ``recorded`` (a result's
    ``numerics`` field) did: both under the reference numerics, same torch and numpy.

    Only the reference numerics are portable between machines, so a result recorded
    under any other setting never counts as reproducible here (``recorded=None``: a
    result from before numerics were recorded).
    """
    if not recorded or not is_reference():
        return False
    now = numerics()
    return (recorded.get("env") == REFERENCE
            and all(recorded.get(key) == now[key] for key in ("cpu_capability", "torch", "numpy")))
