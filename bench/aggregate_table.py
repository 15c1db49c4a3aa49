"""Table 3 on the synthetic benchmark: five aggregators, recall/precision@5,10,15, parameters,
and the wall-clock time to train each one (the closing-note figures of issue 7).

    python bench/aggregate_table.py --users 20000 --epochs 20 [--json-out table.json]

The machine may be shared: the load average before and after is printed next to the times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from galprof.aggregate import AGGREGATORS, EPOCHS, TOP_K, data, synth


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="read this data directory instead of generating")
    ap.add_argument("--models", default=",".join(AGGREGATORS))
    ap.add_argument("--json-out", help="also write the rows as JSON here")
    ap.add_argument("--time-full", metavar="MODEL",
                    help="also time MODEL trained on every user (no test split; 10%% of them "
                         "still validate), the '20,000 users in under 10 minutes' figure")
    args = ap.parse_args()

    start = time.perf_counter()
    if args.data:
        ds = data.load(args.data)
    else:
        ds = synth.generate(synth.SynthConfig(users=args.users, seed=args.seed))
    made = time.perf_counter() - start
    train_idx, test_idx = data.split(ds.n_users, 0.2, args.seed)
    train_set, test_set = ds.subset(train_idx), ds.subset(test_idx)

    from galprof.aggregate import train
    from galprof.cli.aggregate import format_table

    print(f"data: {ds.n_users} users ({train_set.n_users} train / {test_set.n_users} test), "
          f"{len(ds.features)} items, {ds.counts().mean():.2f} items a user, D={ds.dim}, "
          f"C={ds.n_categories}, {ds.labels.sum(1).mean():.2f} labels a user; "
          f"{'read' if args.data else 'generated'} in {made:.1f} s", flush=True)
    print(f"cpu: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    for name in [n for n in args.models.split(",") if n]:
        t = train.train(train_set, name, epochs=args.epochs, seed=args.seed)
        row = train.evaluate(t, test_set)
        row["load_average"] = round(os.getloadavg()[0], 1)
        row["first_loss"], row["last_loss"] = t.losses[0], t.losses[-1]
        rows.append(row)
        print(f"{name}: {t.seconds:.0f} s for {args.epochs} epochs over {train_set.n_users} "
              f"training users, 10% of them validating ({t.seconds / args.epochs:.1f} s/epoch, "
              f"best epoch {t.best_epoch}), load average "
              f"{row['load_average']}, loss {t.losses[0]:.3f} -> {t.losses[-1]:.3f}", flush=True)
    if args.time_full:
        load = os.getloadavg()[0]
        wall = time.perf_counter()
        t = train.train(ds, args.time_full, epochs=args.epochs, seed=args.seed)
        wall = time.perf_counter() - wall
        print(f"full: {args.time_full} on all {ds.n_users} users, {args.epochs} epochs: "
              f"{wall:.0f} s wall ({t.seconds:.0f} s in the epochs), load average {load:.1f} "
              f"-> {os.getloadavg()[0]:.1f}", flush=True)
    if not rows:
        return
    chance = ", ".join(f"{k / ds.n_categories:.3f}" for k in TOP_K)
    print(f"\nrandom ranking: recall@k = k/C = {chance}")
    print(format_table(rows))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"users": ds.n_users, "epochs": args.epochs, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
