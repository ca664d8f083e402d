"""`txmon train` and `txmon evaluate`: the model fitted on history, and detection measured
on labelled days. They join the simulator to the detector, so they sit above both."""

from __future__ import annotations

import argparse

from txmon.settings import Paths, ProcessorSettings, TrainSettings, default, flag_help


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="fit the anomaly model on history and save it")
    t.add_argument("files", nargs="*", help="per-minute counts files (replay formats)")
    t.add_argument("--date", help="date for files without one (YYYY-MM-DD)")
    t.add_argument("--simulate-days", type=int, default=0,
                   help="train on N simulated clean days instead of / besides files")
    t.add_argument("--from-topic", action="store_true",
                   help="train on the window-counts topic")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--false-alarm-rate", type=float, default=None,
                   help="target share of normal minutes scored above the threshold")
    t.add_argument("--out", default=None, help=flag_help(ProcessorSettings, "model_path",
                                                         "model path"))
    t.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="score detection on labelled simulated days and the "
                       "reference days (table, PNGs)")
    e.add_argument("--quick", action="store_true", help="the reduced suite the tests run")
    e.add_argument("--only", help="comma-separated scenario names")
    e.add_argument("--model", help="evaluate this model file instead of training one")
    e.add_argument("--train-days", type=int, default=2,
                   help="simulated clean days to train on (default 2)")
    e.add_argument("--train-rate", type=float, default=default(TrainSettings, "rate"),
                   help="tx/s at peak of the training days (default %(default)g, as txmon "
                        "train without TXMON_TRAIN_RATE)")
    e.add_argument("--seed", type=int, default=0, help="training seed")
    e.add_argument("--data-dir", help=flag_help(Paths, "data_dir", "reference data"))
    e.add_argument("--no-reference", action="store_true", help="skip the reference days")
    e.add_argument("--out", help="write a PNG per scenario into this directory")
    e.add_argument("--report", help="rewrite the results block of this Markdown file")
    e.add_argument("--strict", action="store_true",
                   help="exit 1 when an acceptance criterion is not met")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=run_evaluate)



def run_train(args: argparse.Namespace) -> int:
    from evaluation.train import train

    return train(args)


def run_evaluate(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from evaluation.evaluate import run

    args.command_line = "txmon " + shlex.join(sys.argv[1:])
    return run(args)
