#!/usr/bin/env python3
"""Does cfd rank models as Inception FID does? (issue 24) For every card that carries both figures for the same
way of sampling (the same `zoo eval` flags besides the metric, n and seed), print them side by side with their
ranks, and Spearman's rank correlation over those cards.

    python experiments/cfd_vs_fid.py            # FID at n = 2,048 (every generative card has one)
    python experiments/cfd_vs_fid.py --fid-n 10000
    python experiments/cfd_vs_fid.py --dataset mnist mnist-bin   # within one dataset's cards
"""
from __future__ import annotations

import argparse
import shlex

from scipy.stats import spearmanr

import zoo


def sampling_flags(command: str) -> tuple[str, ...]:
    """The flags of a `zoo eval` command other than the metric, -n and --seed: how its samples were drawn."""
    words, out, skip = shlex.split(command)[3:], [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("-n", "--seed"):
            skip = True
        elif w not in ("--fid", "--cfd", "--kid"):
            out.append(w)
    return tuple(out)


def pairs(fid_n: int, datasets: list[str] | None = None) -> list[tuple[str, float, float, str, int]]:
    """(card id, cfd, FID, sampling flags, cfd's n) for each card with both figures for one way of sampling,
    only the cards of `datasets` when given (cfd and FID compare models of one dataset)."""
    rows = []
    for mid in zoo.list_models():
        card = zoo.get_card(mid)
        if datasets and card.dataset not in datasets:
            continue
        for c in (m for m in card.metrics if m.name == "cfd"):
            for f in (m for m in card.metrics if m.name == "fid" and m.n == fid_n):
                if sampling_flags(c.command) == sampling_flags(f.command):
                    how = " ".join(sampling_flags(c.command)) or "the card's default"
                    rows.append((mid, c.value, f.value, how, c.n))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fid-n", type=int, default=2048)
    ap.add_argument("--dataset", nargs="+", metavar="NAME", help="only the cards of these datasets (e.g. mnist mnist-bin)")
    a = ap.parse_args()
    rows = pairs(a.fid_n, a.dataset)
    if len(rows) < 3:
        among = f" among the {', '.join(a.dataset)} cards" if a.dataset else ""
        raise SystemExit(f"only {len(rows)} cards{among} carry both cfd and FID at n = {a.fid_n}: "
                         "run scripts/cfd_cards.sh")
    # one row per card and way of sampling (a card with a preset may carry both its preset's and --no-preset's)
    by_cfd = {(r[0], r[3]): i + 1 for i, r in enumerate(sorted(rows, key=lambda r: r[1]))}
    by_fid = {(r[0], r[3]): i + 1 for i, r in enumerate(sorted(rows, key=lambda r: r[2]))}
    print(f"| card | sampling | cfd (its n) | rank | FID (n = {a.fid_n:,}) | rank |")
    print("|---|---|---|---|---|---|")
    for mid, c, f, how, n in sorted(rows, key=lambda r: r[1]):
        print(f"| `{mid}` | {how} | {c:.3f} ({n:,}) | {by_cfd[mid, how]} | {f:.2f} | {by_fid[mid, how]} |")
    rho, p = spearmanr([r[1] for r in rows], [r[2] for r in rows])
    cards = len({r[0] for r in rows})
    over = f"{len(rows)} cards" if cards == len(rows) else f"{len(rows)} ways of sampling of {cards} cards"
    print(f"\nSpearman's rho over {over}: {rho:.3f} (p = {p:.3f})")


if __name__ == "__main__":
    main()
