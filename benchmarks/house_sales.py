"""Writes a synthetic house-sales CSV shaped like King County's kc_house_data.csv: an `id` column
(unique per row, a meaningless integer), a `date` column written `20141013T000000`, a few house
columns, and a `price` made from them by a formula, plus noise and a time trend (prices rise
about 8 % over the year of sales).

    python benchmarks/house_sales.py [--rows 2000] [--seed 0] [--out house_sales.csv]

Then train on it: `python train.py data=house_prices_csv data.path=house_sales.csv
data.target=price`. docs/data.md gives the test RMSE before and after identifier and date
columns were recognized.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def house_sales(rows: int, seed: int) -> pd.DataFrame:
    """The table: `rows` sales between 2014-05-02 and 2015-05-01."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 365, rows)
    date = pd.Timestamp("2014-05-02") + pd.to_timedelta(days, unit="D")
    sqft = rng.gamma(9.0, 230.0, rows).round()
    bedrooms = np.clip(np.round(sqft / 600 + rng.normal(0, 0.8, rows)), 1, 8)
    bathrooms = np.clip(np.round(2 * (sqft / 1000 + rng.normal(0, 0.4, rows))) / 2, 1, 5)
    grade = np.clip(np.round(7 + (sqft - 2000) / 900 + rng.normal(0, 1, rows)), 3, 13)
    yr_built = rng.integers(1900, 2015, rows)
    waterfront = (rng.random(rows) < 0.02).astype(int)
    condition = rng.choice(["poor", "fair", "average", "good", "very good"], rows)
    value = (
        60_000
        + 160 * sqft
        + 8_000 * bedrooms
        + 20_000 * bathrooms
        + 35_000 * (grade - 7)
        + 500 * (yr_built - 1960)
        + 300_000 * waterfront
        + 15_000
        * pd.Series(condition)
        .map({"poor": -2, "fair": -1, "average": 0, "good": 1, "very good": 2})
        .to_numpy()
    )
    trend = 1 + 0.08 * days / 365
    price = (value * trend * rng.lognormal(0, 0.06, rows)).round(-2)
    ids = rng.choice(np.arange(1_000_000_000, 9_999_999_999, 7_919), rows, replace=False)
    return pd.DataFrame(
        {
            "id": ids,
            "date": date.strftime("%Y%m%dT000000"),
            "price": price,
            "bedrooms": bedrooms.astype(int),
            "bathrooms": bathrooms,
            "sqft_living": sqft.astype(int),
            "grade": grade.astype(int),
            "yr_built": yr_built,
            "waterfront": waterfront,
            "condition": condition,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("house_sales.csv"))
    args = parser.parse_args()
    house_sales(args.rows, args.seed).to_csv(args.out, index=False)
    print(f"{args.out}: {args.rows} sales")


if __name__ == "__main__":
    main()
