"""The ``jaxbackprop`` command: thin wrappers that parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import sys


def _check(args) -> int:
    from jaxbackprop import gradcheck
    from jaxbackprop.nonlinearities import ACTIVATIONS

    activations = args.activation or ACTIVATIONS
    heads = args.head or ("softmax", "score")
    print(
        f"gradient check: {len(activations)} activations x {len(heads)} heads x {len(gradcheck.MATRIX_CASES)} cases, "
        f"float64; tolerances: manual~autodiff <= {gradcheck.MANUAL_VS_AUTODIFF_RTOL:g}, "
        f"numeric <= {gradcheck.NUMERIC_RTOL:g} (relative)\n"
    )
    print(f"{'activation / head / case':<40} {'manual~autodiff':>16} {'numeric~manual':>15} {'numeric~autodiff':>17}  ok")
    worst: dict = {}
    failed = 0
    results = gradcheck.check_matrix(activations=activations, heads=heads, directions=args.directions)
    for result in results:
        _print_row(result)
        failed += not result.passed
        if args.verbose or not result.passed:
            print(result.table() + "\n")
        _track_worst(worst, result)
    if args.large:
        result = _large_check(args.directions)
        print(result.table() + "\n")
        failed += not result.passed
        _track_worst(worst, result)
    print("\nlargest errors per tensor over the whole matrix (max relative error, max absolute error):")
    print(f"{'tensor':<6} {'manual~autodiff':>22} {'numeric~manual':>22} {'numeric~autodiff':>22}")
    for name in sorted(worst):
        cells = "".join(f" {rel:>10.1e} {abs_:>10.1e} " for rel, abs_ in worst[name])
        print(f"{name:<6}{cells}")
    print(f"\n{'FAILED' if failed else 'PASSED'}: {failed} of the checks exceeded a tolerance")
    return 1 if failed else 0


def _print_row(result) -> None:
    cells = []
    for attr in ("manual_vs_autodiff", "numeric_vs_manual", "numeric_vs_autodiff"):
        t = max(result.tensors, key=lambda t: getattr(t, attr).max_rel)
        cells.append(f"{getattr(t, attr).max_rel:.1e} ({t.name})")
    print(f"{result.label:<40} {cells[0]:>16} {cells[1]:>15} {cells[2]:>17}  {'yes' if result.passed else 'NO'}")


def _track_worst(worst: dict, result) -> None:
    for t in result.tensors:
        comps = (t.manual_vs_autodiff, t.numeric_vs_manual, t.numeric_vs_autodiff)
        old = worst.get(t.name, [(0.0, 0.0)] * 3)
        worst[t.name] = [(max(o[0], c.max_rel), max(o[1], c.max_abs)) for o, c in zip(old, comps)]


def _large_check(directions: int):
    """A realistic size (V = 20,000, d = 50, H = 200, B = 64): random directions for E and W."""
    from jaxbackprop import gradcheck, model

    cfg = model.ModelConfig(vocab_size=20_000, embed_dim=50, window=5, hidden_dim=200, activation="tanh", l2=1e-3)
    batch, _ = gradcheck.case_batch("repeated words", 0, cfg, batch_size=64)
    label = "large: V=20000 d=50 H=200 B=64 tanh/softmax, repeated words"
    return gradcheck.check_gradients(gradcheck.check_params(0, cfg), batch, cfg, directions=directions, label=label)


def _graph_demo(args) -> int:
    from jaxbackprop import graph

    print(graph.demo_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jaxbackprop.nonlinearities import ACTIVATIONS

    parser = argparse.ArgumentParser(
        prog="jaxbackprop",
        description="Backpropagation for the window-based NER classifier: hand-derived gradients, "
        "checked against jax.grad and numeric differences.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="prove the hand-derived gradients: manual vs jax.grad vs numeric, every activation and head",
        description="Runs the gradient-check matrix (6 activations x 2 heads x [random windows, windows "
        "with repeated words and padding, batch of 1]) in float64 and prints, per check, the largest "
        "relative error of manual vs jax.grad and of both vs two-sided numeric differences. Exits 1 "
        "if any tensor exceeds its tolerance.",
    )
    check.add_argument("--activation", action="append", choices=ACTIVATIONS, help="only this activation (repeatable)")
    check.add_argument("--head", action="append", choices=("softmax", "score"), help="only this head (repeatable)")
    check.add_argument("--verbose", "-v", action="store_true", help="print the per-tensor table of every check")
    check.add_argument("--large", action="store_true", help="also check a V=20k, d=50 model along random directions")
    check.add_argument("--directions", type=int, default=8, help="random directions per large tensor (default 8)")
    check.set_defaults(func=_check)

    demo = sub.add_parser(
        "graph-demo",
        help="the lecture's worked example f = (x + y) max(y, z) on the computation-graph engine",
        description="Runs f(x, y, z) = (x + y) * max(y, z) at x=1, y=2, z=0 forward and backward on "
        "jaxbackprop.graph and prints each edge's value, each node's upstream, local and downstream "
        "gradients, the wiggle check, and the three gradient-flow patterns.",
    )
    demo.set_defaults(func=_graph_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
