"""How many samples each of train/val/test gets, without torch, so that config checks at
launch (a few hundred milliseconds in) and the dataset code compute the same numbers."""

from __future__ import annotations

from meshgnn.errors import UserError

SPLITS = ("train", "val", "test")


def split_sizes(num: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """(train, val, test) counts: val and test get their rounded share but at least one sample
    each (an empty validation or test split would make every metric of it undefined); train
    gets the rest, which may be < 1 (see `require_split_sizes`)."""
    n_val = max(1, round(ratios[1] * num))
    n_test = max(1, round(ratios[2] * num))
    return num - n_val - n_test, n_val, n_test


def min_samples(ratios: tuple[float, float, float]) -> int:
    """The smallest N such that N or more samples give every split at least one.

    Rounding makes the train count non-monotonic for small N (ratios 0.1/0.45/0.45 work with 3
    samples, not with 4), so this is the start of the run of sizes that all work. Beyond
    4 / ratios[0] samples train's share alone exceeds the rounding, so the scan stops there.
    """
    if not ratios[0] > 0:
        raise ValueError("the train ratio must be positive")
    limit = 3 + int(4 / ratios[0]) + 3
    works = [split_sizes(num, ratios)[0] >= 1 for num in range(limit + 1)]
    first = limit
    while first > 0 and works[first - 1]:
        first -= 1
    return max(first, 3)


def require_split_sizes(num: int, ratios: tuple[float, float, float], what: str, fix: str) -> tuple[int, int, int]:
    """The split sizes, or one UserError line: `what` names the samples ("data.num_samples=2",
    "2 mesh files in results/"), `fix` says what to change."""
    sizes = split_sizes(num, ratios)
    if sizes[0] < 1:
        raise UserError(f"{what}: too few samples for the train/val/test splits "
                        f"(ratios {ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g} need at least "
                        f"{min_samples(ratios)}); {fix}")
    return sizes
