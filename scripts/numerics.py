"""Run a command under named floating-point numerics settings.

    python scripts/numerics.py reference -- make notebooks        # how chapters are recorded
    python scripts/numerics.py sse41 -- pytest --nbval-lax book    # as on an old CPU
    python scripts/numerics.py --portability -- pytest --nbval-lax book  # each of PORTABILITY
    python scripts/numerics.py --list                              # every setting

``reference`` is :data:`duel_tutorial.numerics.REFERENCE`: the settings the book's stored
outputs and committed runs are recorded under, and the only ones strict nbval compares
under. The others stand in for processors and set-ups a reader may have: this machine's
native kernels with two threads, a CPU with AVX but not AVX2, an SSE4.1-only CPU, an
AVX-512 CPU without AMX, and so on. ``make portability`` runs every chapter in nbval lax mode
(asserts only) under those in :data:`PORTABILITY`; the rest are extra checks a person runs
by hand. Every variable of the reference is unset first, then the setting's are set, so a
setting says everything it changes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from duel_tutorial.numerics import REFERENCE

_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"
SETTINGS: dict[str, dict[str, str]] = {
    "reference": REFERENCE,
    # This CPU's own kernels (AVX-512, and AMX where oneDNN finds it), two threads: what
    # a reader gets by default.
    "native": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    # A CPU with AVX but no AVX2 (Sandy Bridge, 2011), one thread.
    "avx": {"MKL_CBWR": "AVX", "ONEDNN_MAX_CPU_ISA": "AVX", "ATEN_CPU_CAPABILITY": "default",
            "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _AVX512, "OPENBLAS_CORETYPE": "Sandybridge",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    # A CPU before AVX (SSE4.1 only), MKL's most conservative branch, two threads.
    "sse41": {"MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41",
              "ATEN_CPU_CAPABILITY": "default", "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _AVX512,
              "OPENBLAS_CORETYPE": "Nehalem", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    # Not in PORTABILITY, for checks by hand: an AVX-512 CPU without AMX (Skylake-SP),
    # one thread; the reference's AVX2 kernels with two threads; this CPU's native
    # kernels with one.
    "avx512": {"MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"},
    "avx2-2threads": {**REFERENCE, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
                      "OPENBLAS_NUM_THREADS": "2"},
    "native-1thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
PORTABILITY = ("native", "avx", "sse41")


def environment(setting: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``setting`` applied."""
    env = dict(os.environ if base is None else base)
    for key in REFERENCE:
        env.pop(key, None)
    env.update(SETTINGS[setting])
    return env


def run_each(settings: tuple[str, ...], command: list[str]) -> int:
    """Run ``command`` once under each setting; report each; fail if any run failed."""
    failed = []
    for setting in settings:
        print(f"=== numerics {setting}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command, env=environment(setting))
        print(f"=== numerics {setting}: {'passed' if code == 0 else f'FAILED (exit {code})'} "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(setting)
    if failed:
        print(f"failed under: {', '.join(failed)}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="python scripts/numerics.py {SETTING | --portability} -- COMMAND [ARG ...]"
              " | --list")
    parser.add_argument("setting", nargs="?", choices=sorted(SETTINGS))
    parser.add_argument("--list", action="store_true", help="print every setting and exit")
    parser.add_argument("--portability", action="store_true",
                        help=f"run the command under each of {', '.join(PORTABILITY)} in turn")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if args.list:
        for name, values in SETTINGS.items():
            mark = "*" if name in PORTABILITY else " "
            print(f"{mark} {name:14s} " + " ".join(f"{k}={v!r}" for k, v in values.items()))
        print("(* run by make portability)")
        return 0
    if args.portability and args.setting is None and command:
        return run_each(PORTABILITY, command)
    if args.portability or args.setting is None or not command:
        parser.error("expected one setting (or --portability) and a command after --, "
                     "e.g. reference -- make nbval")
    os.execvpe(command[0], command, environment(args.setting))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
