"""Write diabetes_lab_flags.csv, a multi-label dataset derived from scikit-learn's diabetes data.

scikit-learn ships the 442 patients of Efron et al. (2004), "Least Angle Regression", with their
unscaled baseline measurements (``load_diabetes(scaled=False)``). This script keeps age, sex,
body mass index, blood pressure, total cholesterol, the total/HDL cholesterol ratio and the log
triglycerides as inputs. It turns the three lab values it leaves out into 0/1 labels with common
clinical cut-offs, and a patient can have any combination of them:

- high_ldl: LDL cholesterol (s2) of at least 130 mg/dL (NCEP ATP III "borderline high");
- low_hdl: HDL cholesterol (s3) below 40 mg/dL (NCEP ATP III "low");
- high_glucose: blood sugar (s6) of at least 100 mg/dL (ADA "impaired fasting glucose").

The labels are facts about real patients that the inputs only partly determine. HDL is total
cholesterol divided by the ratio, and LDL is about total cholesterol minus HDL minus a fifth of the
triglycerides (the Friedewald estimate), but the source rounds the ratio to a whole number in most
rows; glucose is only loosely related to the inputs. All eight combinations of the three labels
occur. The disease progression target of the original data is not used. Run from the repository
root:

    .venv/bin/python models/data/make_diabetes_lab_flags.py
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_diabetes

OUTPUT = Path(__file__).with_name("diabetes_lab_flags.csv")


def main() -> None:
    frame = load_diabetes(scaled=False, as_frame=True).frame
    table = frame[["age", "sex", "bmi", "bp", "s1", "s4", "s5"]].rename(
        columns={"s1": "total_cholesterol", "s4": "cholesterol_hdl_ratio", "s5": "log_triglycerides"}
    )
    table["age"] = table["age"].astype(int)
    table["sex"] = table["sex"].astype(int)
    table["high_ldl"] = (frame["s2"] >= 130).astype(int)
    table["low_hdl"] = (frame["s3"] < 40).astype(int)
    table["high_glucose"] = (frame["s6"] >= 100).astype(int)
    table.to_csv(OUTPUT, index=False)
    print(f"wrote {len(table)} rows to {OUTPUT}")


if __name__ == "__main__":
    main()
