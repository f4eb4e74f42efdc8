"""Wide-range backfill against its own window: real published rows in the local MariaDB, then the
real `cdrsync backfill` twice into the loopback Planfix stub — once over the sample's own days,
once over `--since 2000-01-01 --until 2030-01-01` — each with a fresh state store.

The second must cost about what the first does (the years without a row are jumped over, not
walked) and send exactly the same requests; the ratio of the two times is the figure.

    python -m tests.benchmarks.widerange                   # every sample
    python -m tests.benchmarks.widerange --sample g9       # one of them

Samples (../shared): `g9` — freepbx-g9telecom-2017, 856 cdr rows of nine days of September 2017,
CDR only (a FreePBX 13 "CDR Reports" CSV export); `oscar` — freepbx-oscar6262-2024, cdr + cel of
an Asterisk 20 / FreePBX 17 lab, April–May 2024 (CEL mode); `roundA` — the project's own Asterisk
20.20.1 corpus (CEL mode).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import create_engine, text

from tests.benchmarks.run import SERVER, Child, _cpu_name, config, log, prepare_db, take
from tests.conftest import MariaDbPbx
from tests.corpus import CORPUS, FREEPBX_CSV, PUBLIC, _dmy_to_iso
from tests.planfix_stub import PlanfixStub

WIDE = ("2000-01-01", "2030-01-01")


def _load_freepbx_csv(name: str, path: Path) -> None:
    """The headerless FreePBX 13 export, in the table's column order, into `cdr`."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = [dict(zip(FREEPBX_CSV, line)) for line in csv.reader(fh) if line]
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    with admin.begin() as conn:
        numeric = {r[0] for r in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :n AND "
            "table_name = 'cdr' AND data_type IN ('int', 'bigint', 'smallint', 'tinyint')"),
            {"n": name})}
        for row in rows:
            row["calldate"] = _dmy_to_iso(row["calldate"])
            for key in numeric & set(row):
                row[key] = int(row[key] or 0)
            row = {k: v for k, v in row.items() if k}
            cols = ", ".join(f"`{k}`" for k in row)
            conn.execute(text(f"INSERT INTO cdr ({cols}) VALUES "
                              f"({', '.join(':' + k for k in row)})"), row)
    admin.dispose()


def _load_dump(name: str, path: Path) -> None:
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    MariaDbPbx(name, "", "", admin).load_dump(path)
    admin.dispose()


@dataclass(frozen=True)
class Sample:
    load: Callable[[str], None]
    own: tuple[str, str]  # --since, --until of the sample's own days
    mode: str


SAMPLES = {
    "g9": Sample(lambda db: _load_freepbx_csv(db, PUBLIC / "freepbx-g9telecom-2017/cdr.csv"),
                 ("2017-09-01", "2017-09-10"), "CDR only"),
    "oscar": Sample(lambda db: _load_dump(
        db, PUBLIC / "freepbx-oscar6262-2024/asteriskcdrdb_cdr_cel.sql"),
        ("2024-04-14", "2024-05-09"), "CEL"),
    "roundA": Sample(lambda db: _load_dump(db, CORPUS / "asteriskcdrdb-cdr-cel.sql"),
                     ("2026-11-26", "2026-11-27"), "CEL"),
}


def backfill(workdir: Path, db: str, since: str, until: str) -> tuple[float, list[str]]:
    """(seconds, the requests Planfix accepted, token left out, sorted) of one backfill run with
    a fresh state store."""
    stub = PlanfixStub().start()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "state.db").unlink(missing_ok=True)
        cfg = config(workdir, db, stub)
        # every call compared, internal ones too (most of g9's rows are feature codes)
        cfg.write_text(cfg.read_text(encoding="utf-8").replace(
            "[planfix]\n", "[planfix]\nsend_internal = true\n"), encoding="utf-8")
        seconds = Child(cfg, "backfill", "--since", since, "--until", until).wait(timeout=900)
        got = sorted(json.dumps(e.without_token(), sort_keys=True) for e in take(stub)
                     if e.status == 200)
    finally:
        stub.stop()
    return seconds, got


def measure(name: str, sample: Sample, workdir: Path, repeat: int, wide: tuple[str, str]
            ) -> dict[str, Any]:
    db = f"cdrsync_bench_wide_{name.lower()}"
    prepare_db(db, reuse=False)
    sample.load(db)
    own_s, wide_s = [], []
    own_req: list[str] = []
    same = True
    for _ in range(repeat):  # alternated, so a slow minute of the machine hits both
        seconds, own_req = backfill(workdir / name / "own", db, *sample.own)
        own_s.append(seconds)
        seconds, wide_req = backfill(workdir / name / "wide", db, *wide)
        wide_s.append(seconds)
        same = same and wide_req == own_req
    own, wide = min(own_s), min(wide_s)
    server = create_engine(SERVER + "/")
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
    server.dispose()
    return {"sample": name, "mode": sample.mode, "own": own, "wide": wide, "ratio": wide / own,
            "requests": len(own_req), "same": same,
            "within": wide <= 3 * own + 5}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", action="append", choices=sorted(SAMPLES))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    ap.add_argument("--workdir", default="/tmp/cdrsync-bench-wide")
    ap.add_argument("--wide", nargs=2, default=WIDE, metavar=("SINCE", "UNTIL"),
                    help=f"the wide range (default: {WIDE[0]} {WIDE[1]})")
    args = ap.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d')}, {_cpu_name()}; own window vs "
          f"--since {args.wide[0]} --until {args.wide[1]}, fastest of {args.repeat}")
    print("| sample | mode | own window | wide range | ratio | requests | same requests |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name in args.sample or list(SAMPLES):
        log(f"{name}: loading and running")
        r = measure(name, SAMPLES[name], Path(args.workdir), args.repeat,
                    tuple(args.wide))
        ok = ok and r["same"] and r["within"]
        print(f"| {r['sample']} | {r['mode']} | {r['own']:.2f} s | {r['wide']:.2f} s | "
              f"{r['ratio']:.2f}x | {r['requests']} | {'yes' if r['same'] else 'NO'} |",
              flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
