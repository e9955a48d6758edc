"""A published inter-region round-trip matrix, for realistic delays between regions: the namespace harness gives it
to `tc netem` (where the kernel has no netem, to an NFQUEUE delay process, cluster/nfqueue_delay.py, or with neither
to the nodes' replication links), and `--latency-profile aws` applies it to replication inside one process.

Source: "Latency Between AWS Global Regions" (average ping round trip between EC2 instances, in ms), as tabulated in
https://acomputerscientistlearnsaws.blogspot.com/2017/04/aws-regions.html . Each pair's figure is the mean of the
table's two directions, rounded to the millisecond. Regions the table does not cover get ``DEFAULT_RTT_MS``.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_RTT_MS = 100.0
PROFILES = ("none", "aws")

_ORDER = ("us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "ap-northeast-2",
          "ap-southeast-1", "ap-southeast-2", "sa-east-1")
# The upper triangle of the published table, row by row (the row's region to each region after it in _ORDER).
_UPPER = (
    (72, 88, 81, 89, 145, 178, 217, 230, 120),
    (19, 153, 167, 103, 132, 174, 158, 193),
    (137, 160, 89, 118, 161, 162, 183),
    (20, 212, 242, 239, 310, 191),
    (237, 266, 326, 323, 195),
    (31, 74, 104, 257),
    (72, 134, 286),
    (175, 328),
    (323,),
)


def _matrix() -> dict[frozenset[str], float]:
    out: dict[frozenset[str], float] = {}
    for i, row in enumerate(_UPPER):
        for j, rtt in enumerate(row, start=i + 1):
            out[frozenset((_ORDER[i], _ORDER[j]))] = float(rtt)
    return out


AWS_RTT_MS = _matrix()


def rtt_ms(a: str, b: str) -> float:
    """The round trip between two regions in ms (0 within a region)."""
    if a == b:
        return 0.0
    return AWS_RTT_MS.get(frozenset((a, b)), DEFAULT_RTT_MS)


def one_way_seconds(a: str, b: str) -> float:
    return rtt_ms(a, b) / 2000.0


def matrix_for(regions: Iterable[str]) -> dict[str, dict[str, float]]:
    """The round trips (ms) among ``regions``, for reports."""
    names = list(regions)
    return {a: {b: rtt_ms(a, b) for b in names if b != a} for a in names}
