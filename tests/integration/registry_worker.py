"""Worker process for the registry concurrency and crash tests (run as a script).

    python registry_worker.py gate TRACKING_URI DB_URL NAME VERSION START_AT OUT_JSON
    python registry_worker.py churn TRACKING_URI DB_URL NAME MODEL_URI RUN_ID   (loops forever)
    python registry_worker.py hold DB_URL NAME START_AT HOLD_S OUT_JSON
"""

from __future__ import annotations

import json
import sys
import time


def _wait(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def main(argv: list[str]) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from huracan.db.session import make_engine
    from huracan.registry.lock import registry_lock
    from huracan.registry.promotion import build_manifest, gate_candidate, register_version

    cmd = argv[0]
    if cmd == "gate":
        uri, db, name, version, start_at, out = argv[1:]
        mlflow.set_tracking_uri(uri)
        engine = make_engine(db)
        _wait(float(start_at))
        t0 = time.time()
        res = gate_candidate(MlflowClient(), engine, name, version, tolerance=0.05)
        with open(out, "w") as fh:
            json.dump({"t0": t0, "t1": time.time(), "promote": res.decision.promote,
                       "champion": res.champion_version}, fh)
    elif cmd == "churn":
        uri, db, name, model_uri, run_id = argv[1:]
        mlflow.set_tracking_uri(uri)
        engine = make_engine(db)
        client = MlflowClient()
        manifest = build_manifest(client, run_id, "composite_score")
        i = 0
        while True:  # each iteration says when it starts and ends, so a kill can be placed
            i += 1
            print(f"start {i}", flush=True)
            mv = register_version(client, name, model_uri, manifest)
            gate_candidate(client, engine, name, mv.version, tolerance=1.0)
            print(f"done {i} v{mv.version}", flush=True)
    elif cmd == "hold":
        db, name, start_at, hold_s, out = argv[1:]
        engine = make_engine(db)
        _wait(float(start_at))
        with registry_lock(engine, name):
            t0 = time.time()
            time.sleep(float(hold_s))
            t1 = time.time()
        with open(out, "w") as fh:
            json.dump({"t0": t0, "t1": t1}, fh)


if __name__ == "__main__":
    main(sys.argv[1:])
