"""`galprof aggregate`: the learnable pooling of photo features into a user descriptor.

TensorFlow is imported only inside `train` and `eval`, so `galprof aggregate --help` and
`synth` work without the `train` extra.
"""

from __future__ import annotations

from pathlib import Path

import click

from galprof.aggregate import AGGREGATORS, EPOCHS, TOP_K
from galprof.cli.common import json_option, library_errors, print_json, quiet_option
from galprof.errors import SetupError


def _train_module():
    try:
        from galprof.aggregate import train
    except ImportError as e:
        raise SetupError(f"training needs TensorFlow ({e}): pip install 'galprof[train]'") from e
    return train


def _progress(quiet: bool, name: str):
    if quiet:
        return None

    def report(epoch, loss, val_loss):
        val = f", validation {val_loss:.4f}" if val_loss is not None else ""
        click.echo(f"{name}: epoch {epoch} loss {loss:.4f}{val}", err=True)
    return report


def format_table(rows: list[dict], ks=TOP_K) -> str:
    """The layout of the paper's Table 3: one row per aggregator."""
    head = ["aggregator"] + [f"recall@{k}" for k in ks] + [f"precision@{k}" for k in ks] \
        + ["parameters", "train s"]
    lines = [head]
    for r in rows:
        lines.append([r["aggregator"]] + [f"{r[f'recall@{k}']:.4f}" for k in ks]
                     + [f"{r[f'precision@{k}']:.4f}" for k in ks]
                     + [f"{r['parameters']:,}", f"{r['train_seconds']:.0f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@click.group()
def aggregate():
    """Learn a user descriptor and interests from the features of the user's photos.

    \b
    Example:
        galprof aggregate synth --out bench-data --users 20000
        galprof aggregate eval --data bench-data --epochs 20
        galprof aggregate train --data bench-data --model reduced-attention --out agg.npz
    """


@aggregate.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write aggregate.npz into (created if missing).")
@click.option("--users", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Number of users.")
@click.option("--categories", type=click.IntRange(min=2), default=40, show_default=True,
              help="Number of interest categories C.")
@click.option("--dim", type=click.IntRange(min=2), default=1280, show_default=True,
              help="Feature dimension D (1280 = MobileNetV2's penultimate layer).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed gives the same data.")
@library_errors
def synth(out_dir: Path, users: int, categories: int, dim: int, seed: int):
    """Write a synthetic benchmark of users, item features and labels.

    Shaped like the paper's Amazon subset; the generator is described in docs/aggregate.md.

    \b
    Example:
        galprof aggregate synth --out bench-data --users 20000 --seed 0
    """
    from galprof.aggregate import data, synth as generator
    ds = generator.generate(generator.SynthConfig(users=users, categories=categories, dim=dim,
                                                  seed=seed))
    path = data.save_npz(ds, out_dir)
    counts = ds.counts()
    click.echo(f"{path}: {ds.n_users} users, {len(ds.features)} items "
               f"({counts.mean():.1f} a user, {counts.min()}-{counts.max()}), "
               f"D={ds.dim}, C={ds.n_categories}, {ds.labels.sum(axis=1).mean():.2f} labels a user")


def _load_split(data_dir: Path, test_fraction: float, seed: int):
    from galprof.aggregate import data
    ds = data.load(data_dir)
    train_idx, test_idx = data.split(ds.n_users, test_fraction, seed)
    return ds, ds.subset(train_idx), ds.subset(test_idx)


_data_option = click.option(
    "--data", "data_dir", required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Data directory: aggregate.npz, items.jsonl or items.csv (see docs/aggregate.md).")
_epochs_option = click.option(
    "--epochs", type=click.IntRange(min=1), default=EPOCHS, show_default=True,
    help="Passes over the training users (the epoch with the lowest validation loss is kept).")
_split_options = [
    click.option("--test-fraction", type=click.FloatRange(0.01, 0.9), default=0.2,
                 show_default=True, help="Share of users held out for testing."),
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Seed of the train/test split, initialisation and batch order."),
    click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                 help="Users per training batch."),
]


def _with(options):
    def deco(f):
        for option in reversed(options):
            f = option(f)
        return f
    return deco


@aggregate.command()
@_data_option
@click.option("--model", "name", required=True, type=click.Choice(AGGREGATORS),
              help="Which aggregator to train.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file to write (.npz); the metadata goes beside it as .json.")
@_epochs_option
@_with(_split_options)
@json_option
@quiet_option
@library_errors
def train(data_dir: Path, name: str, out_path: Path, epochs: int, test_fraction: float, seed: int,
          batch_size: int, as_json: bool, quiet: bool):
    """Train one aggregator and export it for numpy inference.

    Prints its scores on the held-out users and writes FILE (.npz) and FILE's .json.

    \b
    Example:
        galprof aggregate train --data bench-data --model reduced-attention --out agg.npz
    """
    trainer = _train_module()
    ds, train_set, test_set = _load_split(data_dir, test_fraction, seed)
    trained = trainer.train(train_set, name, epochs=epochs, batch_size=batch_size, seed=seed,
                            progress=_progress(quiet or as_json, name))
    row = trainer.evaluate(trained, test_set)
    weights, meta = trainer.export(trained, out_path, {
        "data": str(data_dir), "train_users": train_set.n_users, "test_users": test_set.n_users,
        "test_metrics": row})
    if as_json:
        print_json({**row, "weights": str(weights), "metadata": str(meta)})
        return
    click.echo(format_table([row]))
    click.echo(f"wrote {weights} and {meta}")


@aggregate.command(name="eval")
@_data_option
@_epochs_option
@_with(_split_options)
@click.option("--models", "names", default=",".join(AGGREGATORS), show_default=True,
              help="Comma-separated aggregators to compare.")
@json_option
@quiet_option
@library_errors
def eval_(data_dir: Path, epochs: int, test_fraction: float, seed: int, batch_size: int,
          names: str, as_json: bool, quiet: bool):
    """Train the aggregators and print the paper's Table 3.

    Recall and precision at k = 5, 10, 15 on the held-out users, and parameter counts.

    \b
    Example:
        galprof aggregate eval --data bench-data --epochs 20
    """
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in AGGREGATORS]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown aggregator(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {', '.join(AGGREGATORS)}", param_hint="--models")
    trainer = _train_module()
    ds, train_set, test_set = _load_split(data_dir, test_fraction, seed)
    rows = []
    for name in chosen:
        trained = trainer.train(train_set, name, epochs=epochs, batch_size=batch_size, seed=seed,
                                progress=_progress(quiet or as_json, name))
        rows.append(trainer.evaluate(trained, test_set))
    chance = {k: min(1.0, k / ds.n_categories) for k in TOP_K}
    if as_json:
        print_json({"users": {"train": train_set.n_users, "test": test_set.n_users},
                    "chance_recall": chance, "rows": rows})
        return
    click.echo(f"{train_set.n_users} training users, {test_set.n_users} test users, "
               f"C={ds.n_categories}, D={ds.dim}, {epochs} epochs; "
               f"random ranking: recall@k = k/C ({', '.join(f'{v:.3f}' for v in chance.values())})")
    click.echo(format_table(rows))
