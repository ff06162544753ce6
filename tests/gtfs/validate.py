#!/usr/bin/env python3
"""Checks Egret's GTFS feeds with tools that are not Egret's own.

Run by tests/gtfs_feeds.rs with the interpreter of the venv that
.ci/python-venv.sh makes. DIR holds what the test fetched over HTTP:

    static.zip                                        GET /gtfs/static.zip
    vehicle-positions.pb, vehicle-positions-2.pb      GET /gtfs-rt/vehicle-positions, twice
    trip-updates.pb, trip-updates-2.pb                GET /gtfs-rt/trip-updates, twice

It decodes both realtime feeds with Google's official bindings
(gtfs-realtime-bindings), checks that they carry entities, that every trip, route
and stop they name is in static.zip (stop sequences too), that no plate is in
them and that header timestamps did not go down between the fetches; then runs
gtfs-validator on static.zip and gtfs-rt-validator on static.zip with both
realtime feeds. Any ERROR-severity finding fails; warnings are printed.

Exit status 0 when all is well, 1 with every problem printed otherwise.
"""

import csv
import datetime as dt
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from google.transit import gtfs_realtime_pb2

problems = []


def problem(message):
    problems.append(message)
    print(f"PROBLEM: {message}")


def read_static(path):
    """The tables of static.zip as lists of dicts."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        for required in ["agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt", "calendar.txt", "feed_info.txt"]:
            if required not in names:
                problem(f"static.zip has no {required}")
        return {
            name[: -len(".txt")]: list(csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8-sig")))
            for name in names
            if name.endswith(".txt")
        }


def decode(path):
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(path.read_bytes())
    return message


def check_header(name, message):
    h = message.header
    if h.gtfs_realtime_version != "2.0":
        problem(f"{name}: gtfs_realtime_version {h.gtfs_realtime_version!r}, not 2.0")
    if not h.HasField("incrementality") or h.incrementality != gtfs_realtime_pb2.FeedHeader.FULL_DATASET:
        problem(f"{name}: incrementality is not FULL_DATASET")
    if h.timestamp <= 0:
        problem(f"{name}: no header timestamp")
    ids = [e.id for e in message.entity]
    if len(ids) != len(set(ids)):
        problem(f"{name}: entity ids repeat")
    if not ids:
        problem(f"{name}: no entities")


def check_trip(name, trip, static):
    if trip.trip_id and trip.trip_id not in static["trips"]:
        problem(f"{name}: trip {trip.trip_id} is not in trips.txt")
    if trip.route_id and trip.route_id not in static["routes"]:
        problem(f"{name}: route {trip.route_id} is not in routes.txt")
    known = static["trips"].get(trip.trip_id)
    if known and trip.route_id and known["route_id"] != trip.route_id:
        problem(f"{name}: trip {trip.trip_id} is on route {known['route_id']}, not {trip.route_id}")


def check_vehicle_descriptor(name, entity_id, vehicle):
    if vehicle.license_plate:
        problem(f"{name}: entity {entity_id} carries a licence plate")


def check_feeds(directory, static):
    vp = decode(directory / "vehicle-positions.pb")
    tu = decode(directory / "trip-updates.pb")
    check_header("vehicle-positions", vp)
    check_header("trip-updates", tu)
    for e in vp.entity:
        if not e.HasField("vehicle"):
            problem(f"vehicle-positions: entity {e.id} is not a vehicle")
            continue
        check_trip("vehicle-positions", e.vehicle.trip, static)
        check_vehicle_descriptor("vehicle-positions", e.id, e.vehicle.vehicle)
        if e.vehicle.stop_id and e.vehicle.stop_id not in static["stops"]:
            problem(f"vehicle-positions: stop {e.vehicle.stop_id} is not in stops.txt")
    updates = [e for e in tu.entity if e.HasField("trip_update")]
    if len(updates) != len(tu.entity):
        problem("trip-updates: an entity is not a trip update")
    with_stops = 0
    for e in updates:
        u = e.trip_update
        check_trip("trip-updates", u.trip, static)
        check_vehicle_descriptor("trip-updates", e.id, u.vehicle)
        with_stops += any(s.arrival.HasField("time") or s.departure.HasField("time") for s in u.stop_time_update)
        for s in u.stop_time_update:
            if s.stop_id not in static["stops"]:
                problem(f"trip-updates: stop {s.stop_id} is not in stops.txt")
            scheduled = static["stop_times"].get((u.trip.trip_id, s.stop_sequence))
            if scheduled != s.stop_id:
                problem(f"trip-updates: {u.trip.trip_id} #{s.stop_sequence} is {s.stop_id}, stop_times.txt says {scheduled}")
    if with_stops == 0:
        problem("trip-updates: no trip update predicts a time at a stop")
    for feed, first in [("vehicle-positions", vp), ("trip-updates", tu)]:
        second = decode(directory / f"{feed}-2.pb")
        if second.header.timestamp < first.header.timestamp:
            problem(f"{feed}: header timestamp went down, {first.header.timestamp} then {second.header.timestamp}")
    print(f"decoded with gtfs-realtime-bindings: {len(vp.entity)} vehicle positions, {len(updates)} trip updates ({with_stops} with predicted times)")
    return max(vp.header.timestamp, tu.header.timestamp)


def run_tool(module, args):
    """Runs a validator's CLI with this interpreter (its venv), echoing its output."""
    command = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


def report_notices(tool, report_path):
    """Prints a report's notices, and counts its ERROR ones as problems."""
    if not report_path.exists():
        problem(f"{tool} wrote no report at {report_path}")
        return
    notices = json.loads(report_path.read_text()).get("notices", [])
    for n in notices:
        samples = n.get("sampleNotices", [])[:3]
        line = f"{tool}: {n.get('severity')} {n.get('code')} x{n.get('totalNotices')}: {json.dumps(samples, ensure_ascii=False)}"
        if n.get("severity") == "ERROR":
            problem(line)
        else:
            print(line)
    if not notices:
        print(f"{tool}: no findings")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(sys.argv[1])
    tables = read_static(directory / "static.zip")
    static = {
        "trips": {r["trip_id"]: r for r in tables.get("trips", [])},
        "routes": {r["route_id"]: r for r in tables.get("routes", [])},
        "stops": {r["stop_id"]: r for r in tables.get("stops", [])},
        "stop_times": {(r["trip_id"], int(r["stop_sequence"])): r["stop_id"] for r in tables.get("stop_times", [])},
    }
    print(f"static.zip: {len(static['routes'])} routes, {len(static['trips'])} trips, {len(static['stops'])} stops, {len(static['stop_times'])} stop times")
    now = check_feeds(directory, static)
    # The validators judge freshness against "now": the feeds' own clock, since
    # the test's scenario runs at a simulated time.
    at = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="egret-gtfs-reports-") as out:
        out = Path(out)
        run_tool("gtfs_validator.cli", ["-i", str(directory / "static.zip"), "-o", str(out / "static"), "-c", "CN", "-d", at.date().isoformat()])
        report_notices("gtfs-validator", out / "static" / "report.json")
        run_tool(
            "gtfs_rt_validator.cli",
            [
                "-gtfs", str(directory / "static.zip"),
                "-tu", str(directory / "trip-updates.pb"),
                "-vp", str(directory / "vehicle-positions.pb"),
                "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--out", str(out / "realtime"),
            ],
        )
        report_notices("gtfs-rt-validator", out / "realtime" / "report.json")
        system_errors = out / "realtime" / "system_errors.json"
        if system_errors.exists() and json.loads(system_errors.read_text()).get("notices"):
            problem(f"gtfs-rt-validator system errors: {system_errors.read_text()}")
    if problems:
        print(f"{len(problems)} problems")
        return 1
    print("GTFS feeds OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
