"""The GPU proof: one offline command that builds, tests and measures tinyfast on a bare CUDA machine.

    benchmarks/gpu_proof.sh --out DIR [--wheelhouse WHEELS]     # = python -m benchmarks.proof ...
    python -m benchmarks.proof --phases evidence --out DIR1 --wheelhouse W   # first command: < 5 min
    python -m benchmarks.proof --phases figures --out DIR2 --wheelhouse W    # second command: < 7 min
    python -m benchmarks.proof --cpu-smoke --out DIR            # every phase, tiny, on the CPU (CI)

Phases, in order, each under its own time cap inside one overall budget; a phase that fails or
reaches its cap is recorded as such and the later phases still run:

  preflight   seconds: Python, torch, CUDA, nvcc, ninja, setuptools, pybind11, compute-sanitizer,
              Python.h, GPU and driver, free disk; each missing piece named in one line
  wheelhouse  install pytest/tqdm/matplotlib/setuptools offline from ``--wheelhouse`` (private dir)
  build       ``setup.py build_ext --inplace`` for the visible GPU's arch + PTX (no downloads); the
              DALI plugin (``csrc/dali/build.py``) too when DALI imports             [evidence]
  tests       the CUDA tests (``pytest -m cuda``: the op's first, then the rest)    [evidence]
  sanitizers  ``compute-sanitizer`` memcheck and racecheck over ``benchmarks.proof.sanitize_cases``
                                                                                     [evidence]
  data        the full-size synthetic set (200 x 500 + 50), JPEG tree and shards    [figures]
  op          ``python -m benchmarks --sections op``: copy ceiling, fused op, graphs [figures]
  loaders     images/s of each loader; the ``torch`` DataLoader over workers         [figures]
  syncs       host syncs per batch (gpu loader) and per training step               [figures]
  train       ``python -m benchmarks --sections train``: resnet18, then resnet50 and
              mobilenet_v2 as time allows, fed by ``gpu``, ``torch`` and a fixed batch [figures]

``--phases evidence`` then ``--phases figures`` run the proof as two commands on one machine: the
second reuses the first's build (the extension built in place stays) and merges its records
(``build/proof/state.json``) into one report. Files in ``--out`` (at most five):
``<gpu>-<date>.json`` (the schema of ``python -m benchmarks`` plus ``phases``, ``proof`` and
``targets``), ``.md``, ``.png`` (when matplotlib imports), ``-cuda-tests.txt`` (raw pytest +
sanitizer output) and ``.log`` (every command's output). The JSON and MD are rewritten after every
phase. The modules: ``cli`` (phases, caps, budget), ``runner``, ``setup_phases``, ``evidence``,
``figures``, ``report``, ``verdict``, ``steps`` and ``sanitize_cases`` (run in their own processes).
"""
