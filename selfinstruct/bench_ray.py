"""`make bench`, Ray part: `generate --ray` on the same windows of the sample corpus with 1 and then 2 Ray workers
(one CPU each, the embedded model on the transformers engine, one window per engine step), measured in this
script on this machine. Prints windows/s of each, the ratio, and Ray's start-up (local instance and engines).

One worker holds one CPU, so on a 2-core machine two workers use the whole machine, as a one-process generate
already does through torch threads: the ratio shows Ray's scaling, not a gain over one process here. The gain
is on a cluster, where each worker brings its own cores or GPU."""

import sys
import time
from pathlib import Path

from . import generate
from .bench import publish
from .config import GenerateConfig
from .runs import Manifest

OUT = Path("outputs/bench")
SAMPLE = Path(__file__).resolve().parents[1] / "corpora" / "harbour_of_velmoor.txt"


def one(workers: int, windows: int, corpus: Path) -> dict:
    out = OUT / f"ray-{workers}"
    config = GenerateConfig(corpus=str(corpus), out=str(out), max_windows=windows, windows_per_step=1,
                            backend="transformers", overwrite=True, ray="local", ray_workers=workers)
    started = time.perf_counter()
    generate.run(config)
    wall = time.perf_counter() - started
    drafting = Manifest.read(out).summary["this_run"]["generate_seconds"]
    return {"workers": workers, "windows": windows, "wall_seconds": round(wall, 1),
            "startup_seconds": round(wall - drafting, 1), "windows_per_s": round(windows / drafting, 4)}


def main(argv: list[str]) -> int:
    windows = int(argv[0]) if argv else 4
    corpus = Path(argv[1]) if len(argv) > 1 else SAMPLE
    OUT.mkdir(parents=True, exist_ok=True)
    results = {f"workers_{n}": one(n, windows, corpus) for n in (1, 2)}
    results["two_vs_one_workers"] = round(results["workers_2"]["windows_per_s"] /
                                          results["workers_1"]["windows_per_s"], 2)
    publish("ray", results, OUT / "ray.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
