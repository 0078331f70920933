"""The ``distill`` command line. Every subcommand takes a YAML config plus ``--set KEY=VALUE``
overrides, the same :class:`distill.config.RunConfig` the Python API takes."""

from __future__ import annotations

import argparse
import sys

from distill.errors import BudgetExhausted, DistillError

#: exit status of a run the budget stopped: finished work is kept, and it is not done
EXIT_BUDGET = 3


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (omit for the built-in CPU defaults)")
    p.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set teacher.backend=vllm (repeatable)")
    p.add_argument("-o", "--output-dir", help="shortcut for --set output_dir=DIR")


def _load(args):
    from distill.config import load_config

    overrides = list(args.overrides) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    return load_config(args.config, overrides)


def cmd_generate(args) -> int:
    from distill.runner import run_generate

    cfg = _load(args)
    if args.estimate:
        from distill.generator.estimate import estimate_generate

        print(estimate_generate(cfg).text())
        return 0
    s = run_generate(cfg, progress=not args.no_progress)
    print(f"\n{s.status}: {s.shards_done}/{s.shards_total} shards, {s.records} records in {s.output_dir}/shards")
    print(f"tokens paid for (whole run): prompt {s.prompt_tokens_paid}, completion {s.completion_tokens_paid}"
          + (f", cost {s.cost:.4f}" if s.cost else ""))
    print(f"this invocation: {s.shards_written_now} shard(s) written, {s.cached_samples_now} samples from the cache, "
          f"{s.tokens_per_second_now} completion tokens/s, {s.seconds} s")
    if s.counts:
        print("funnel: " + ", ".join(f"{k}={v}" for k, v in sorted(s.counts.items())))
    if s.message:
        print(s.message)
    if s.status == "budget_exhausted":
        print(f"distill: stopped by the budget (exit {EXIT_BUDGET}); rerun with a larger budget to finish",
              file=sys.stderr)
        return EXIT_BUDGET
    return 0


def cmd_filter(args) -> int:
    from distill.critics.pipeline import run_filter

    if args.allow_partial:
        args.overrides.append("filter.allow_partial=true")
    stats = run_filter(_load(args), progress=not args.no_progress)
    first = stats["funnel"][0]["count"] or 1
    print(f"\n{'stage':<28}{'records':>10}{'% of generated':>16}  dropped")
    for row in stats["funnel"]:
        dropped = ", ".join(f"{k}={v}" for k, v in row.get("dropped", {}).items() if v)
        print(f"{row['stage']:<28}{row['count']:>10}{100 * row['count'] / first:>15.1f}%  {dropped}")
    print(f"kept shards in {stats['output_dir']}/kept; funnel and score distributions in {stats['output_dir']}/stats.json")
    return 0


def cmd_corpus(args) -> int:
    from distill.corpus.build import cli_corpus

    return cli_corpus(_load(args), push_to_hub=args.push_to_hub, progress=not args.no_progress)


def cmd_inspect(args) -> int:
    from distill.corpus.inspect import inspect_corpus

    print(inspect_corpus(args.path, examples=args.examples))
    return 0


def cmd_train(args) -> int:
    from distill.trainers.train import cli_train

    return cli_train(_load(args), progress=not args.no_progress)


def cmd_eval(args) -> int:
    from distill.trainers.evaluate import cli_eval

    return cli_eval(_load(args), progress=not args.no_progress, sheet_n=args.sheet, score_sheet=args.score_sheet,
                    sheet_copy=args.sheet_copy)


def cmd_run(args) -> int:
    from distill.loop import cli_run

    if args.estimate:
        from distill.generator.estimate import estimate_generate
        from distill.loop import round_config

        est = estimate_generate(round_config(_load(args), 1, None))
        print("round 1's generate (later rounds sample the students, whose cost is local compute):")
        print(est.text())
        return 0
    return cli_run(_load(args), progress=not args.no_progress)


def cmd_critic(args) -> int:
    from distill.critics.trained import cli_train

    return cli_train(args.rest)


def cmd_cancel(args) -> int:
    from pathlib import Path

    from distill.config import load_config
    from distill.generator.backends import make_backend
    from distill.generator.backends.openai_batch import open_batches

    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise DistillError(f"{run} is not a `distill generate` output folder (no config.yaml)")
    cfg = load_config(run / "config.yaml")
    ids = open_batches(run) if (run / "batches").is_dir() else []
    if not ids:
        print(f"no open batch jobs in {run}")
        return 0
    backend = make_backend(cfg.teacher)
    try:
        for b, status in zip(ids, backend.cancel_batches(ids)):
            print(f"{b}: {status}")
    finally:
        backend.close()
    print("finished answers stay in the cache; rerunning `distill generate` sends the rest as new batches")
    return 0


def cmd_view(args) -> int:
    from distill.view.app import serve

    return serve(args.path, host=args.host, port=args.port, labels=args.labels)


def cmd_show_config(args) -> int:
    from distill.config import dump_config

    print(dump_config(_load(args)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    def stage(name: str, help: str, func) -> argparse.ArgumentParser:
        """A subcommand that takes the run config and may show a progress bar."""
        p = sub.add_parser(name, help=help)
        _config_args(p)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
        return p

    ge = stage("generate", "over-generate samples with the teacher (resumable)", cmd_generate)
    ge.add_argument("--estimate", action="store_true", help="print the requests, tokens and cost range of the "
                    "unfinished shards, and what the cache holds, without sending anything")
    fi = stage("filter", "run the critics and dedup over generated shards (resumable)", cmd_filter)
    fi.add_argument("--allow-partial", action="store_true", help="filter a generate run that stopped before its end "
                    "(budget, error): its finished shards only")
    co = stage("corpus", "turn kept records into a Hugging Face dataset with a card and plots", cmd_corpus)
    co.add_argument("--push-to-hub", metavar="REPO", help="also upload to this Hub repo (private unless corpus.hub.private=false)")
    ins = sub.add_parser("inspect", help="print a summary of a corpus: splits, sizes, funnel, examples")
    ins.add_argument("path", help="a `distill corpus` output folder")
    ins.add_argument("-n", "--examples", type=int, default=3, help="examples shown per split")
    ins.set_defaults(func=cmd_inspect)
    stage("train", "fine-tune a student on a corpus (resumable)", cmd_train)
    ev = stage("eval", "evaluate models and baselines on held-out inputs (ROUGE where references exist)", cmd_eval)
    sh = ev.add_mutually_exclusive_group()
    sh.add_argument("--sheet", type=int, metavar="N", help="write a blind human-judgment sheet (eval/sheet/) for the "
                    "first N inputs from what was last evaluated")
    sh.add_argument("--score-sheet", metavar="FILE", help="score a filled sheet (.jsonl or .csv) into results.json/.md")
    ev.add_argument("--sheet-copy", action="store_true", help="--sheet: also judge the copy baseline")
    ru = stage("run", "the whole loop: generate, filter, corpus, train, eval, for loop.rounds rounds", cmd_run)
    ru.add_argument("--estimate", action="store_true", help="estimate round 1's generate (see generate --estimate)")
    cr = sub.add_parser("critic", help="critic tools: `distill critic train LABELS.jsonl ...`")
    cr.add_argument("action", choices=["train"])
    cr.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the action (see distill critic train -h)")
    cr.set_defaults(func=cmd_critic)
    ca = sub.add_parser("cancel", help="cancel the Batch jobs a `distill generate` run (teacher.openai.batch) has open")
    ca.add_argument("run", help="the run's output folder")
    ca.set_defaults(func=cmd_cancel)
    vw = sub.add_parser("view", help="a local web page: watch a run live, browse kept and dropped records, label "
                        "pairs, judge blind sheets")
    vw.add_argument("path", help="a `distill generate` or `distill run` output folder")
    vw.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    vw.add_argument("--port", type=int, default=8765)
    vw.add_argument("--labels", help="labels JSONL to write (default: PATH/labels.jsonl)")
    vw.set_defaults(func=cmd_view)
    c = sub.add_parser("show-config", help="print the effective config (defaults, file and overrides merged)")
    _config_args(c)
    c.set_defaults(func=cmd_show_config)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BudgetExhausted as e:  # a stage that stops on the budget (distill run's generate)
        print(f"distill: {e} (exit {EXIT_BUDGET}: stopped by the budget)", file=sys.stderr)
        return EXIT_BUDGET
    except DistillError as e:
        print(f"distill: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment said no (read-only disk, full disk, a file in the way)
        from distill.errors import os_error_message

        print(f"distill: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distill: interrupted; finished shards are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
