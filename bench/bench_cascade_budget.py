"""How well Little's margin finds its own mistakes: the cascade's accuracy at fixed Big budgets.

For one or more Little models against one Big, in process (no HTTP), on a split of one or
more folders: Little's and Big's accuracy, the cascade's best accuracy when at most 10, 15,
20 or 25 % of the clips may go to Big, the share of clips Big must be asked about before the
cascade reaches Big's own accuracy, and what the shipped rule (McNemar, the ``cascade``
section's) would choose on these clips. It compares candidate Little models, e.g. the
shipped one against one distilled from Big (recipe ``little_distilled``)::

    python -m bench.bench_cascade_budget --little models/little --little cand/little_distilled \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra

Choose between candidates on ``--split validation`` (the default); the test split is for
reporting the one chosen.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.data.clips import DatasetError, select_clips
from kws.model.installed import SERVICE_MODEL
from kws.model.runtime import load_model
from kws.reports import format_table, write_json_report
from kws.tuning.cascade_replay import DEFAULT_ALPHA, PairedPredictions, big_input, model_answerer, predict_both
from kws.util.logs import setup_logging

log = logging.getLogger("bench_cascade_budget")

BUDGETS = (0.10, 0.15, 0.20, 0.25)


def budget_figures(predictions: PairedPredictions, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """The cascade at each Big budget, the share that reaches Big's accuracy, and the shipped rule's choice."""
    outcomes = predictions.sweep(predictions.candidate_thresholds())
    best = {
        f"{budget:.2f}": max(o.accuracy for o in outcomes if o.big_fraction <= budget + 1e-12) for budget in BUDGETS
    }
    reaching = [o.big_fraction for o in outcomes if o.accuracy >= predictions.big_accuracy]
    rule = predictions.calibrate(alpha)
    return {
        "clips": predictions.samples,
        "little_accuracy": round(predictions.little_accuracy, 4),
        "big_accuracy": round(predictions.big_accuracy, 4),
        "best_accuracy_within_big_fraction": {budget: round(value, 4) for budget, value in best.items()},
        "big_fraction_to_reach_big": round(min(reaching), 4),
        "rule": {"threshold": rule.threshold, "accuracy": round(rule.accuracy, 4),
                 "big_fraction": round(rule.big_fraction, 4)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--little", type=Path, action="append", required=True, metavar="STEM",
                        help="a Little model to judge (repeatable)")
    parser.add_argument("--big", type=Path, default=Path("models") / SERVICE_MODEL, metavar="STEM",
                        help="default: %(default)s")
    parser.add_argument("--data-dir", type=Path, action="append", required=True, metavar="DIR",
                        help="labelled folder (repeatable)")
    parser.add_argument("--split", default="validation", help="default: %(default)s (choose on it, never on test)")
    parser.add_argument("--report", type=Path, default=Path("reports/cascade_budget.json"), help="default: %(default)s")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    big = load_model(args.big)
    results = {}
    for stem in args.little:
        little = load_model(stem, prefer="zlib")
        clips = [clip for d in args.data_dir for clip in select_clips(d, args.split, little.labels)]
        if not clips:
            raise SystemExit(f"error: --data-dir: no {args.split} clips in {', '.join(map(str, args.data_dir))}")
        paired = predict_both(clips, little, model_answerer(big), big_input(big.metadata.raw), desc=str(stem))
        results[str(stem)] = budget_figures(paired.predictions)
    rows = [
        [stem, r["little_accuracy"], r["big_accuracy"], *r["best_accuracy_within_big_fraction"].values(),
         r["big_fraction_to_reach_big"], f"{r['rule']['accuracy']:.4f} @ {100 * r['rule']['big_fraction']:.1f} %"]
        for stem, r in results.items()
    ]
    headers = ["little", "Little", "Big", *(f"<= {100 * b:.0f} %" for b in BUDGETS), "to reach Big", "shipped rule"]
    print(f"{args.split} clips of {', '.join(d.name for d in args.data_dir)}; cascade accuracy within each Big budget")
    print(format_table(headers, rows))
    write_json_report(args.report, {"split": args.split, "big": str(args.big), "results": results})
    print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DatasetError as error:
        sys.exit(f"error: --data-dir: {error}")
