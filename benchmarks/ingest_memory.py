"""Peak memory of `polymodal index` over many small images, and whether it grows with the collection.

    python benchmarks/ingest_memory.py [--count 50000] [--model lite] [--workdir DIR] [--json]

Generates `--count` small distinct images (16-96 px, PNG and JPEG, seeded) once into the work
directory, then runs the real command `polymodal index` on them in a child process and samples its
resident memory (/proc/PID/status VmRSS) every 0.2 s. Reported: peak RSS, the RSS at each
quarter of the run, and the growth from the second quarter's peak to the last quarter's (a
collection-sized structure would show up as steady growth). Target from the issue: peak under
1.5 GB, not growing with the collection. The baseline in the same run is the model alone: the RSS
of a process that loaded the model and embedded two batches of images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402


def make_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    have = sum(1 for _ in folder.iterdir())
    if have >= count:
        return
    rng = np.random.default_rng(0)
    for i in range(count):
        side = int(rng.integers(16, 97))
        # smooth gradients plus noise: compressible like small real pictures, distinct bytes per file
        y, x = np.mgrid[0:side, 0:side]
        base = np.stack([(x * rng.integers(1, 8) + y * rng.integers(1, 8) + rng.integers(0, 255)) % 256
                         for _ in range(3)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(sub / (f"{i:06d}.png" if i % 2 else f"{i:06d}.jpg"), quality=90)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample(cmd: list[str], env: dict) -> tuple[list[tuple[float, float]], int, str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples, start = [], time.monotonic()
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value is not None:
            samples.append((time.monotonic() - start, value))
        time.sleep(0.2)
    out, err = proc.communicate()
    return samples, proc.returncode, out.decode() + err.decode()[-2000:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--model", default="lite")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "polymodal-ingest-memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    images = args.workdir / f"images-{args.count}"
    print(f"generating {args.count} images in {images} (once) ...", file=sys.stderr)
    make_images(images, args.count)
    env = {**os.environ}

    # The model alone, at the ingestion batch size (its activation buffers included).
    model_only = ("import polymodal, sys; m = polymodal.load(sys.argv[1]); m.encode_images([sys.argv[2]] * 2 * m.image_batch_size);"
                  "import time; time.sleep(1.0)")
    first = next(iter(sorted(next(images.iterdir()).iterdir())))
    base_samples, code, log = sample([sys.executable, "-c", model_only, args.model, str(first)], env)
    if code != 0:
        sys.exit(log)
    baseline = max(v for _, v in base_samples)

    with tempfile.TemporaryDirectory(dir=args.workdir) as db:
        cmd = [sys.executable, "-m", "polymodal", "index", str(images), "-c", "memory", "--db", db,
               "--model", args.model, "--json"]
        samples, code, log = sample(cmd, env)
        if code not in (0, 3):
            sys.exit(log)
        report = json.loads(log[: log.rindex("}") + 1]) if "}" in log else {}

    total = samples[-1][0]
    quarters = []
    for q in range(4):
        part = [v for t, v in samples if q * total / 4 <= t <= (q + 1) * total / 4]
        quarters.append(round(max(part), 1) if part else None)
    result = {
        "machine": machine(),
        "model": args.model,
        "images": args.count,
        "seconds": round(total, 1),
        "files_per_second": report.get("files_per_second"),
        "count": report.get("count"),
        "peak_rss_mb": round(max(v for _, v in samples), 1),
        "model_alone_rss_mb": round(baseline, 1),
        "quarter_peaks_mb": quarters,
        "growth_q2_to_q4_mb": round(quarters[3] - quarters[1], 1) if None not in quarters else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(f"machine: {m['cpu']}, {m['usable_cpus']} cpus, {m['memory_gib']} GiB")
        print(f"indexed {result['count']} of {args.count} small images with {args.model} in {result['seconds']} s "
              f"({result['files_per_second']} files/s)")
        print(f"peak RSS {result['peak_rss_mb']} MB (model alone {result['model_alone_rss_mb']} MB; "
              f"ratio {result['peak_rss_mb'] / result['model_alone_rss_mb']:.2f}x); target < 1536 MB")
        print(f"peak per quarter of the run: {quarters} MB; growth from the 2nd to the 4th quarter: "
              f"{result['growth_q2_to_q4_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
