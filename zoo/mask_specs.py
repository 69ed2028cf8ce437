"""The grammar of mask specs (`zoo complete --mask`), without torch: the CLI refuses an unknown or malformed
spec before importing torch or reading any data, and `zoo.masks.parse_mask` builds a mask from a spec that
passed this check."""
from __future__ import annotations

from .errors import InputError

#: the named masks (no argument); zoo.masks.BUILDERS builds them
NAMED = ("top-half", "bottom-half", "left-half", "right-half", "center")
#: the masks that take an argument, as written
WITH_ARGUMENT = ("first:K", "random:FRACTION[:SEED]", "box:TOP,LEFT,HEIGHT,WIDTH")


def split_spec(spec: str) -> tuple[str, tuple[float | int, ...]]:
    """(name, numbers) of a spec: ('top-half', ()), ('first', (K,)), ('random', (F, SEED)), ('box', (T, L, H, W));
    an InputError naming the known specs for anything else."""
    name, _, arg = str(spec).partition(":")
    try:
        if name in NAMED and not arg:
            return name, ()
        if name == "first" and arg:
            return name, (int(arg),)
        if name == "random" and arg:
            frac, _, seed = arg.partition(":")
            return name, (float(frac), int(seed or 0))
        if name == "box" and arg:
            numbers = tuple(int(v) for v in arg.split(","))
            if len(numbers) == 4:
                return name, numbers
    except ValueError:  # not a number
        pass
    raise InputError(f"unknown mask '{spec}'; use one of {', '.join(NAMED)}, first:K, random:FRACTION[:SEED] "
                     "or box:TOP,LEFT,HEIGHT,WIDTH")
