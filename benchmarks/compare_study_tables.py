"""Compare the tables of two `gnsel study` output folders, timing columns aside (how #10 checked that the
restructuring left every table as it was).

    python benchmarks/compare_study_tables.py BEFORE_DIR AFTER_DIR

One line per CSV under tables/: byte-identical, equal apart from timing columns, or DIFFERENT (with the
first differing values). Exits 1 if any table differs. Timings, ratios of timings and the asynchronous
live searches (PBT, ASHA) are expected to differ between any two runs.
"""
import re, sys
from pathlib import Path
import pandas as pd

TIMING = re.compile(r"(seconds|_s$|_s_|wall|time|ratio|share|speed|_ms|median|spread|per_s|_us$|_vs_val_loss$)", re.I)
# Tables whose every value but the key is a ratio of timings.
TIMING_TABLES = {"cost_ratios.csv": ("case",)}

def main(base, new):
    base, new = Path(base) / "tables", Path(new) / "tables"
    names = sorted({p.name for p in base.glob("*.csv")} | {p.name for p in new.glob("*.csv")})
    bad = 0
    for n in names:
        a, b = base / n, new / n
        if not a.exists() or not b.exists():
            print(f"{n}: only in {'new' if b.exists() else 'base'}"); bad += 1; continue
        if a.read_bytes() == b.read_bytes():
            print(f"{n}: byte-identical"); continue
        da, db = pd.read_csv(a), pd.read_csv(b)
        if list(da.columns) != list(db.columns) or len(da) != len(db):
            print(f"{n}: DIFFERENT shape/columns {da.shape} {db.shape}"); bad += 1; continue
        keys = TIMING_TABLES.get(n)
        timing = [c for c in da.columns if (c not in keys if keys else TIMING.search(str(c)))]
        keep = [c for c in da.columns if c not in timing]
        diff = [c for c in keep if not da[c].equals(db[c])]
        if diff:
            print(f"{n}: DIFFERENT in {diff} (timing columns ignored: {timing})"); bad += 1
            for c in diff[:4]:
                m = da[c] != db[c]
                print("    ", c, list(zip(da[c][m].head(3), db[c][m].head(3))))
        else:
            print(f"{n}: equal apart from timing columns {timing}")
    print(f"{len(names)} tables, {bad} different")
    return bad

if __name__ == "__main__":
    sys.exit(1 if main(*sys.argv[1:3]) else 0)
