#!/usr/bin/python3
"""Independent oracle for vpp-plan: solve the same dispatch QP with a general
solver (scipy SLSQP) on random fleets and compare the allocation to 1e-6; also
check that bad fleet files are rejected with the line number and reason.

Run with /usr/bin/python3 (Debian's python3-scipy). Env VPP_BUILD is the meson
build directory holding tools/vpp-plan. Last line: "N passed, N failed".
"""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from scipy.optimize import minimize

COLS = ["id", "rated_charge_kw", "rated_discharge_kw", "capacity_kwh", "soc",
        "min_soc", "max_soc", "ramp_kw_per_s", "power_kw", "availability"]
EPS = 1e-3


def limits(d, horizon_s):
    """Feasible range and energies, written from DESIGN.md §6 (not from the C)."""
    h = horizon_s / 3600.0
    soc = min(max(d["soc"], 0.0), 1.0)
    e_dis = max((soc - d["min_soc"]) * d["capacity_kwh"], 0.0)
    e_chg = max((d["max_soc"] - soc) * d["capacity_kwh"], 0.0)
    hi = min(d["rated_discharge_kw"], e_dis / h)
    lo = -min(d["rated_charge_kw"], e_chg / h)
    r = d["ramp_kw_per_s"]
    if r > 0:
        rlo, rhi = d["power_kw"] - r * horizon_s, d["power_kw"] + r * horizon_s
        if rhi < lo:
            hi = lo
        elif rlo > hi:
            lo = hi
        else:
            lo, hi = max(lo, rlo), min(hi, rhi)
    return lo, hi, max(e_dis, EPS), max(e_chg, EPS)


def random_fleet(rng, n):
    fleet = []
    for i in range(n):
        mn = rng.uniform(0, 0.3)
        mx = rng.uniform(0.7, 1.0)
        soc = rng.random() if rng.random() > 0.1 else rng.choice([mn, mx])
        fleet.append({
            "id": "dev-%03d" % i,
            "rated_charge_kw": rng.uniform(1, 10),
            "rated_discharge_kw": rng.uniform(1, 10),
            "capacity_kwh": rng.uniform(0.5, 20),
            "soc": soc, "min_soc": mn, "max_soc": mx,
            "ramp_kw_per_s": 0.0 if rng.random() < 0.5 else rng.uniform(0.5, 5),
            "power_kw": rng.uniform(-6, 6),
            "availability": 0.0 if rng.random() < 0.1 else rng.uniform(0.05, 1),
        })
    return fleet


def write_csv(path, fleet):
    with open(path, "w") as f:
        f.write(",".join(COLS) + "\n")
        for d in fleet:
            f.write(",".join(d["id"] if c == "id" else repr(d[c]) for c in COLS) + "\n")


def run_plan(plan, path, target, horizon):
    r = subprocess.run([plan, "--fleet", path, "--target-kw", repr(target),
                        "--horizon-s", repr(horizon)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("vpp-plan failed: %s" % r.stderr)
    lines = r.stdout.strip().split("\n")
    summary = json.loads(lines[-1])
    rows = {}
    for ln in lines[1:-1]:
        i, p, lo, hi = ln.split(",")
        rows[i] = (float(p), float(lo), float(hi))
    return rows, summary


def solve_qp(a, ed, ec, lo, hi, target):
    """min sum p^2/(a e(p)) s.t. sum a p = target, lo <= p <= hi, with a
    general solver (SLSQP). The objective is piecewise in the sign of p, so
    p = sd*y - sc*z with y, z >= 0, sd = sqrt(a e_dis), sc = sqrt(a e_chg):
    the objective becomes sum y^2 + z^2 (at the optimum y z = 0), a smooth,
    well-conditioned QP whatever the spread of the weights."""
    n = len(a)
    sd, sc = np.sqrt(a * ed), np.sqrt(a * ec)
    ts = max(1.0, abs(target))
    M = np.hstack([np.diag(sd), -np.diag(sc)])  # p = M x

    def f(x):
        return float(np.dot(x, x))

    def g(x):
        return 2 * x

    cons = [
        {"type": "eq", "fun": lambda x: (float(np.dot(a, M @ x)) - target) / ts,
         "jac": lambda x: (a @ M) / ts},
        {"type": "ineq", "fun": lambda x: M @ x - lo, "jac": lambda x: M},
        {"type": "ineq", "fun": lambda x: hi - M @ x, "jac": lambda x: -M},
    ]
    x0 = np.concatenate([np.maximum(lo, 0) / sd, np.maximum(-hi, 0) / sc])
    res = minimize(f, x0, jac=g, bounds=[(0, None)] * (2 * n), constraints=cons,
                   method="SLSQP", options={"ftol": 1e-15, "maxiter": 5000})
    p = M @ res.x
    # Exit mode 8 ("positive directional derivative in line search") means
    # SLSQP cannot improve further at this precision; accept it only for a
    # point that is feasible to 1e-9.
    feasible = (abs(float(np.dot(a, p)) - target) <= 1e-9 * ts and
                np.all(p >= lo - 1e-9 * (1 + np.abs(lo))) and
                np.all(p <= hi + 1e-9 * (1 + np.abs(hi))))
    res.success = bool(res.success or (res.status == 8 and feasible))
    return p, res


def oracle_case(plan, tmp, rng, case):
    n = rng.randint(1, 40)
    horizon = rng.choice([1.0, 1.0, 5.0, 60.0, 900.0])
    fleet = random_fleet(rng, n)
    lims = [limits(d, horizon) for d in fleet]
    inc = [i for i, d in enumerate(fleet) if d["availability"] > 0]
    a = np.array([fleet[i]["availability"] for i in inc])
    lo = np.array([lims[i][0] for i in inc])
    hi = np.array([lims[i][1] for i in inc])
    ed = np.array([lims[i][2] for i in inc])
    ec = np.array([lims[i][3] for i in inc])
    dmin, dmax = float(np.dot(a, lo)), float(np.dot(a, hi))
    if rng.random() < 0.8:
        target = rng.uniform(dmin, dmax)
    else:
        target = rng.choice([dmax + rng.uniform(1, 50), dmin - rng.uniform(1, 50)])
    path = os.path.join(tmp, "fleet%d.csv" % case)
    write_csv(path, fleet)
    rows, summary = run_plan(plan, path, target, horizon)

    errs = []
    # Limits agree with the independent formula.
    for i, d in enumerate(fleet):
        p, plo, phi = rows[d["id"]]
        if d["availability"] == 0:
            if p != 0:
                errs.append("%s: zero availability but p=%r" % (d["id"], p))
            continue
        if abs(plo - lims[i][0]) > 1e-9 * (1 + abs(plo)) or abs(phi - lims[i][1]) > 1e-9 * (1 + abs(phi)):
            errs.append("%s: limits [%r,%r] vs [%r,%r]" % (d["id"], plo, phi, lims[i][0], lims[i][1]))
    if len(inc) == 0:
        return errs
    feasible = dmin <= target <= dmax
    if feasible != summary["feasible"]:
        errs.append("feasible %r vs %r" % (summary["feasible"], feasible))
    if feasible:
        p_ref, res = solve_qp(a, ed, ec, lo, hi, target)
        if not res.success:
            # A general solver that did not converge is no oracle: count
            # the case as failed loudly rather than skip it.
            errs.append("scipy did not converge: %s" % res.message)
        p_got = np.array([rows[fleet[i]["id"]][0] for i in inc])
        diff = np.max(np.abs(p_got - p_ref) / np.maximum(1.0, np.abs(p_ref)))
        if diff > 1e-6:
            errs.append("max rel diff %.3g vs scipy" % diff)
        if abs(float(np.dot(a, p_got)) - target) > 1e-9 * max(1.0, abs(target)):
            errs.append("sum a p = %r, target %r" % (float(np.dot(a, p_got)), target))
        if summary["shortfall_kw"] != 0:
            errs.append("shortfall reported on a feasible target")
    else:
        p_got = np.array([rows[fleet[i]["id"]][0] for i in inc])
        want = hi if target > dmax else lo
        if np.max(np.abs(p_got - want)) > 0:
            errs.append("infeasible target: not saturated")
        short = target - float(np.dot(a, want))
        if abs(summary["shortfall_kw"] - short) > 1e-9 * max(1.0, abs(short)):
            errs.append("shortfall %r vs %r" % (summary["shortfall_kw"], short))
        if summary["saturated"] != len(inc):
            errs.append("saturated %r vs %d" % (summary["saturated"], len(inc)))
    return errs


BAD = [
    ("missing column", "id,rated_charge_kw,rated_discharge_kw,capacity_kwh,soc,min_soc,max_soc,ramp_kw_per_s,power_kw\n"
     "a,5,5,10,0.5,0.1,0.9,0,0\n", 1, "missing column 'availability'"),
    ("NaN", None, 3, "'soc' is not a finite number"),
    ("negative capacity", None, 3, "negative capacity_kwh"),
    ("SoC outside 0..1", None, 3, "soc outside 0..1"),
    ("min > max", None, 3, "min_soc > max_soc"),
    ("short line", None, 3, "fields"),
    ("duplicate id", None, 3, "duplicate id"),
]


def bad_csv(name):
    head = ",".join(COLS) + "\n"
    good = "a,5,5,10,0.5,0.1,0.9,0,0,1\n"
    row = {"NaN": "b,5,5,10,nan,0.1,0.9,0,0,1\n",
           "negative capacity": "b,5,5,-10,0.5,0.1,0.9,0,0,1\n",
           "SoC outside 0..1": "b,5,5,10,1.5,0.1,0.9,0,0,1\n",
           "min > max": "b,5,5,10,0.5,0.9,0.1,0,0,1\n",
           "short line": "b,5,5,10,0.5\n",
           "duplicate id": "a,5,5,10,0.5,0.1,0.9,0,0,1\n"}[name]
    return head + good + row


def main():
    build = os.environ.get("VPP_BUILD")
    if not build:
        print("VPP_BUILD is not set")
        print("0 passed, 1 failed")
        return 1
    plan = os.path.join(build, "tools", "vpp-plan")
    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="vpp-plan-oracle-")
    try:
        rng = random.Random(20261122)
        for case in range(150):
            try:
                errs = oracle_case(plan, tmp, rng, case)
            except Exception as e:  # a crash of the tool is a failure
                errs = ["exception: %s" % e]
            if errs:
                failed += 1
                print("FAIL oracle case %d: %s" % (case, "; ".join(errs[:3])))
            else:
                passed += 1
        print("oracle: %d random fleets compared with scipy SLSQP" % (passed + failed))

        for name, text, line, reason in BAD:
            path = os.path.join(tmp, "bad.csv")
            with open(path, "w") as f:
                f.write(text if text is not None else bad_csv(name))
            r = subprocess.run([plan, "--fleet", path, "--target-kw", "1"],
                               capture_output=True, text=True, timeout=30)
            want = "%s:%d:" % (path, line)
            if r.returncode == 1 and want in r.stderr and reason in r.stderr:
                passed += 1
            else:
                failed += 1
                print("FAIL bad csv %s: rc=%d stderr=%r" % (name, r.returncode, r.stderr))

        # Usage errors: clear message, exit 2; --help documents the columns.
        r = subprocess.run([plan, "--target-kw", "5"], capture_output=True, text=True, timeout=30)
        h = subprocess.run([plan, "--help"], capture_output=True, text=True, timeout=30)
        if r.returncode == 2 and "--fleet" in r.stderr and h.returncode == 0 and all(
                c in h.stdout for c in COLS):
            passed += 1
        else:
            failed += 1
            print("FAIL usage: rc=%d %r / help rc=%d" % (r.returncode, r.stderr, h.returncode))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
