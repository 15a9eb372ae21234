"""The reference numerics: named in one place, detected in a process, and applied by
scripts/numerics.py exactly (every reference variable unset first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from duel_tutorial.numerics import REFERENCE, is_reference, numerics, same_numerics
from duel_tutorial.provenance import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from numerics import PORTABILITY, SETTINGS, environment  # noqa: E402  (scripts/numerics.py)

_REPORT = ("import json; from duel_tutorial.numerics import is_reference, numerics; "
           "print(json.dumps({'reference': is_reference(), 'numerics': numerics()}))")


def _report(setting: str) -> dict:
    """is_reference() and numerics() of a fresh Python started under ``setting``."""
    out = subprocess.run([sys.executable, "-c", _REPORT], env=environment(setting),
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return json.loads(out)


def test_a_process_under_the_reference_knows_it():
    report = _report("reference")
    if report["numerics"]["machine"] not in ("x86_64", "AMD64"):
        pytest.skip("the reference numerics are defined for x86-64")
    assert report["reference"] and report["numerics"]["cpu_capability"] == "AVX2"
    assert report["numerics"]["env"] == REFERENCE


def test_mkl_runs_the_branch_the_reference_names():
    """MKL ignores a branch the CPU's vendor does not support (MKL_CBWR=AVX2 on an AMD CPU)
    and falls back, silently, to its processor-dependent automatic branch; its verbose log
    names the branch that actually ran."""
    env = {**environment("reference"), "MKL_VERBOSE": "1"}
    code = "import torch; torch.ones(8, 8) @ torch.ones(8, 8)"
    log = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    if "SGEMM" not in log:
        pytest.skip("this torch does not call MKL for a float32 matmul")
    assert f"CNR:{REFERENCE['MKL_CBWR']}" in log.split("SGEMM", 1)[1].splitlines()[0]


def test_portability_settings_are_not_the_reference():
    assert len(PORTABILITY) >= 3 and all(SETTINGS[s] != REFERENCE for s in PORTABILITY)
    assert not _report("native")["reference"]  # one process is enough to see the check work


def test_environment_unsets_every_reference_variable_before_applying_a_setting():
    env = environment("native", base={"MKL_CBWR": "AVX2", "PATH": "/bin"})
    assert "MKL_CBWR" not in env and env["PATH"] == "/bin"
    assert env["OMP_NUM_THREADS"] == SETTINGS["native"]["OMP_NUM_THREADS"]
    assert {k: environment("reference", base={})[k] for k in REFERENCE} == REFERENCE


def test_a_result_counts_as_reproducible_only_under_the_reference():
    assert not same_numerics(None) and not same_numerics({})
    recorded = numerics()
    # This test process runs under whatever numerics pytest was started with.
    assert same_numerics(recorded) == is_reference()
    assert not same_numerics({**recorded, "torch": "0.0.1"})


def test_provenance_names_the_processor():
    """Wall-clock figures are recorded with the CPU's model and its fast instruction sets."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), None)
    if name is None:  # not Linux, or no model name (some ARM kernels)
        assert cpu_model() is None
        return
    assert cpu_model().startswith(f"{name} (") and cpu_model().endswith(" CPUs)")


def test_the_package_commit_is_read_once_per_process(monkeypatch, tmp_path):
    """A process runs the code it imported, so a commit made on disk while it runs (a long
    training run, say) must not change the commit its later results record."""
    from duel_tutorial import provenance as prov

    prov._package_commit.cache_clear()
    first = prov.git_commit()

    run = prov.subprocess.run

    def read_git(command, *args, **kwargs):
        if command[0] == "git":
            raise AssertionError("git read again")
        return run(command, *args, **kwargs)

    monkeypatch.setattr(prov.subprocess, "run", read_git)
    assert prov.git_commit() == first and prov.provenance()["git_commit"] == first
    with pytest.raises(AssertionError, match="git read again"):
        prov.git_commit(tmp_path)  # an explicit checkout is read every time
