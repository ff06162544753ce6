#!/usr/bin/env python3
"""Generate the Egret city reference data (readers, segments, cameras, parking,
routes, rules) from the hand-written geography in corridors.py.

Standard library only, no randomness: re-running it rewrites identical files.
    python3 data/tools/build_city.py
Exits non-zero with a message if any validation fails.
"""
import heapq
import json
import math
import os
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

sys.dont_write_bytecode = True  # keep data/tools free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corridors as C  # noqa: E402

VERSION = "2026.11-1"
DATA = Path(__file__).resolve().parents[1]
CITY_DIR = DATA / "city"
PREFIX = {"xiamen": "XM", "zhangzhou": "ZZ", "quanzhou": "QZ"}
CITY_ORDER = ["xiamen", "zhangzhou", "quanzhou"]
CLASSES = ["expressway", "bridge", "tunnel", "brt", "arterial", "urban"]
CURVATURE = {"expressway": 1.02, "bridge": 1.01, "tunnel": 1.01, "brt": 1.03, "arterial": 1.04, "urban": 1.06}
FREE_FLOW = {"expressway": 0.95, "bridge": 0.95, "tunnel": 0.94, "brt": 0.93, "arterial": 0.92, "urban": 0.90}
OPPOSITE = {"northbound": "southbound", "southbound": "northbound", "eastbound": "westbound", "westbound": "eastbound"}


class ValidationError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise ValidationError(msg)


# ---------------------------------------------------------------- geometry
def hav(a, b):
    """Great-circle distance in metres between (lon, lat) points."""
    r = 6371008.8
    p1, p2 = math.radians(a[1]), math.radians(b[1])
    dp, dl = p2 - p1, math.radians(b[0] - a[0])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def cumulative(pts):
    cum = [0.0]
    for a, b in zip(pts, pts[1:]):
        cum.append(cum[-1] + hav(a, b))
    return cum


def point_at(pts, cum, c):
    for i in range(len(pts) - 1):
        if c <= cum[i + 1] or i == len(pts) - 2:
            span = cum[i + 1] - cum[i]
            t = 0.0 if span == 0 else min(1.0, max(0.0, (c - cum[i]) / span))
            return (pts[i][0] + t * (pts[i + 1][0] - pts[i][0]), pts[i][1] + t * (pts[i + 1][1] - pts[i][1]))
    return pts[-1]


def sub_polyline(pts, cum, c1, c2):
    out = [point_at(pts, cum, c1)]
    out += [p for p, c in zip(pts, cum) if c1 + 1e-6 < c < c2 - 1e-6]
    out.append(point_at(pts, cum, c2))
    return out


def city_then_id(field):
    city_of = {v: k for k, v in PREFIX.items()}
    return lambda x: (CITY_ORDER.index(city_of[x[field][:2]]), x[field])


def rnd(p):
    return [round(p[0], 5), round(p[1], 5)]


def bearing_label(a, b):
    dx = (b[0] - a[0]) * math.cos(math.radians((a[1] + b[1]) / 2))
    dy = b[1] - a[1]
    deg = math.degrees(math.atan2(dx, dy)) % 360
    return ["northbound", "eastbound", "southbound", "westbound"][int(((deg + 45) % 360) // 90)]


def along(seg, offset):
    """(lon, lat) at offset_m metres along a segment (offset scaled to geometry)."""
    pts = [tuple(p) for p in seg["geometry"]]
    cum = cumulative(pts)
    return point_at(pts, cum, cum[-1] * offset / seg["length_m"])


def crosses(p1, p2, q1, q2):
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


# ---------------------------------------------------------------- network
def build_network():
    readers, meta = [], {}  # meta[rid] = dict(named=key|None, island=bool)
    counters = Counter()
    node_rid = {}

    def new_reader(city, name, name_zh, lon, lat, island, key):
        counters[("R", city)] += 1
        rid = f"{PREFIX[city]}-R{counters[('R', city)]:04d}"
        r = {"reader_id": rid, "name": name}
        if name_zh:
            r["name_zh"] = name_zh
        r.update({"city": city, "lat": round(lat, 5), "lon": round(lon, 5), "kind": "gantry"})
        readers.append(r)
        meta[rid] = {"named": key, "island": island, "city": city, "lonlat": (lon, lat)}
        return rid

    def node_reader(key):
        if key not in node_rid:
            name, zh, lon, lat, city, island = C.NODES[key]
            node_rid[key] = new_reader(city, name, zh, lon, lat, island, key)
        return node_rid[key]

    links = []
    for cor in C.CORRIDORS:
        pts, anchors = [], []
        for p in cor["points"]:
            if isinstance(p, str):
                check(p in C.NODES, f"corridor {cor['id']}: unknown node {p}")
                n = C.NODES[p]
                pts.append((n[2], n[3]))
                anchors.append((len(pts) - 1, p))
            else:
                pts.append(tuple(p))
        check(isinstance(cor["points"][0], str) and isinstance(cor["points"][-1], str),
              f"corridor {cor['id']} must start and end at named nodes")
        cum = cumulative(pts)
        gantries = []  # (chainage, rid)
        for (ia, ka), (ib, kb) in zip(anchors, anchors[1:]):
            ca, cb = cum[ia], cum[ib]
            if not gantries:
                gantries.append((ca, node_reader(ka)))
            n = max(1, math.ceil((cb - ca) / cor["spacing"]))
            na, nb = C.NODES[ka], C.NODES[kb]
            for i in range(1, n):
                c = ca + (cb - ca) * i / n
                lon, lat = point_at(pts, cum, c)
                city = na[4] if (c - ca) <= (cb - c) else nb[4]
                label = f"{cor['short']} K{c / 1000:.1f}"
                label_zh = f"{cor['name_zh']} K{c / 1000:.1f}"
                gantries.append((c, new_reader(city, label, label_zh, lon, lat, na[5] and nb[5], None)))
            gantries.append((cb, node_reader(kb)))
        first, last = pts[0], pts[-1]
        fwd, rev = cor.get("bounds") or (bearing_label(first, last), OPPOSITE[bearing_label(first, last)])
        for (c1, a), (c2, b) in zip(gantries, gantries[1:]):
            geom = sub_polyline(pts, cum, c1, c2)
            links.append({"corridor": cor, "a": a, "b": b, "geom": geom, "bounds": (fwd, rev)})
    return readers, meta, links


def build_segments(readers, meta, links):
    rname = {r["reader_id"]: r["name"] for r in readers}
    counters = Counter()
    segments = []
    for ln in links:
        cor = ln["corridor"]
        cls = cor["road_class"]
        by_city = cor.get("limit_by_city", {})
        limit = min(by_city.get(meta[ln["a"]]["city"], cor["limit"]), by_city.get(meta[ln["b"]]["city"], cor["limit"]))
        geom_len = sum(hav(p, q) for p, q in zip(ln["geom"], ln["geom"][1:]))
        for frm, to, geom, bound in ((ln["a"], ln["b"], ln["geom"], ln["bounds"][0]),
                                     (ln["b"], ln["a"], ln["geom"][::-1], ln["bounds"][1])):
            city = meta[frm]["city"]
            counters[city] += 1
            segments.append({
                "segment_id": f"{PREFIX[city]}-S{counters[city]:04d}",
                "name": f"{cor['name']} {bound}, {rname[frm]} to {rname[to]}",
                "from_reader_id": frm,
                "to_reader_id": to,
                "length_m": int(round(geom_len * CURVATURE[cls])),
                "speed_limit_kmh": limit,
                "free_flow_kmh": round(limit * FREE_FLOW[cls] * 2) / 2,
                "road_class": cls,
                "city": city,
                "on_island": bool(meta[frm]["island"] and meta[to]["island"]),
                "corridor": cor["id"],
                "geometry": [rnd(p) for p in geom],
            })
    return segments


def corridor_segments(segments, corridor_id, direction):
    """Forward ('f') or reverse ('r') segments of a corridor in link order."""
    segs = [s for s in segments if s["corridor"] == corridor_id]
    return segs[0::2] if direction == "f" else segs[1::2]


# ---------------------------------------------------------------- routing
def shortest_path(segments, src, dst, allowed):
    adj = defaultdict(list)
    for s in segments:
        if s["road_class"] in allowed:
            adj[s["from_reader_id"]].append(s)
    dist, prev, heap = {src: 0}, {}, [(0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if u == dst:
            break
        if d > dist[u]:
            continue
        for s in adj[u]:
            v, nd = s["to_reader_id"], d + s["length_m"]
            if nd < dist.get(v, math.inf):
                dist[v], prev[v] = nd, s
                heapq.heappush(heap, (nd, v))
    check(dst in dist, f"no path {src} -> {dst} over {sorted(allowed)}")
    path, v = [], dst
    while v != src:
        path.append(prev[v])
        v = prev[v]["from_reader_id"]
    return path[::-1]


def make_stops(route_id, direction, path, meta, rname, kind):
    def stop_name(rid):
        n = rname[rid]
        if n.startswith("BRT ") and n.endswith(" station"):
            n = n[4:-8]
        return n

    cands, pos = [], 0  # (position along path, segment, offset, reader)
    cands.append((0, path[0], 0, path[0]["from_reader_id"]))
    for i, s in enumerate(path):
        rid = s["to_reader_id"]
        last = i == len(path) - 1
        if last or (meta[rid]["named"] and s["road_class"] != "expressway"):
            off = s["length_m"] if last else max(0, s["length_m"] - 40)
            cands.append((pos + off, s, off, rid))
        pos += s["length_m"]
    kept = []
    for c in cands:
        if kept and c[0] - kept[-1][0] < 250:
            if c is cands[-1]:
                kept[-1] = c
            continue
        kept.append(c)
    if kind == "intercity" and len(kept) > 8:
        kept = kept[:4] + kept[-4:]
    if len(kept) > 20:
        idx = sorted({round(i * (len(kept) - 1) / 19) for i in range(20)})
        kept = [kept[i] for i in idx]
    check(6 <= len(kept) <= 20, f"{route_id} dir {direction}: {len(kept)} stops (need 6-20)")
    stops = []
    for k, (_, s, off, rid) in enumerate(kept, 1):
        lon, lat = along(s, off)
        stops.append({"stop_id": f"{route_id}-{direction}-{k:02d}", "name": stop_name(rid),
                      "segment_id": s["segment_id"], "offset_m": off, "lat": round(lat, 5), "lon": round(lon, 5)})
    return stops


def build_routes(segments, meta, readers):
    rname = {r["reader_id"]: r["name"] for r in readers}
    node_rid = {m["named"]: rid for rid, m in meta.items() if m["named"]}
    reverse = {(s["from_reader_id"], s["to_reader_id"]): s for s in segments}
    routes = []
    for spec in C.ROUTES:
        kind = spec["kind"]
        allowed = {"brt"} if kind == "brt" else set(CLASSES) - {"brt"} - ({"expressway"} if kind == "bus" else set())
        wps = [node_rid[k] for k in spec["waypoints"]]
        path = []
        for a, b in zip(wps, wps[1:]):
            path += shortest_path(segments, a, b, allowed)
        back = [reverse[(s["to_reader_id"], s["from_reader_id"])] for s in reversed(path)]
        cities = {s["city"] for s in path} | {meta[path[-1]["to_reader_id"]]["city"]}
        first, last, peak, off = spec["timetable"]
        directions = []
        for d, p in enumerate((path, back)):
            directions.append({"direction_id": d, "headsign": spec["headsigns"][d],
                               "segments": [s["segment_id"] for s in p],
                               "stops": make_stops(spec["route_id"], d, p, meta, rname, kind)})
        routes.append({
            "route_id": spec["route_id"], "name": spec["name"], "name_zh": spec["name_zh"], "kind": kind,
            "cities": [c for c in CITY_ORDER if c in cities],
            "directions": directions,
            "timetable": {"first_departure": first, "last_departure": last,
                          "headways": [{"from": a, "to": b, "headway_min": peak} for a, b in C.PEAKS],
                          "default_headway_min": off},
        })
    return routes


# ---------------------------------------------------------------- cameras, parking
def build_cameras(segments, meta, readers):
    rname = {r["reader_id"]: r["name"] for r in readers}
    counters = Counter()
    cams = []

    def add(seg, kind, offset, extra, label):
        counters[seg["city"]] += 1
        lon, lat = along(seg, offset)
        cam = {"camera_id": f"{PREFIX[seg['city']]}-C{counters[seg['city']]:04d}",
               "name": f"{label}: {seg['name']}",
               "kind": kind, "segment_id": seg["segment_id"], "offset_m": offset,
               "lat": round(lat, 5), "lon": round(lon, 5)}
        cam.update(extra)
        cams.append(cam)

    def pick(cor_id, frac, d):
        segs = corridor_segments(segments, cor_id, d)
        check(segs, f"camera spec: unknown corridor {cor_id}")
        return segs[min(len(segs) - 1, int(frac * len(segs)))]

    for cor_id, frac, d in C.SPEED_CAMERAS:
        s = pick(cor_id, frac, d)
        add(s, "speed", int(s["length_m"] * 0.45), {"speed_limit_kmh": s["speed_limit_kmh"]}, "Speed camera")

    # red light: arterial/urban approaches into at-grade junctions (>= 3 neighbouring
    # gantries, no expressway/bridge/tunnel/BRT touching it, not an interchange)
    neigh, grade_sep = defaultdict(set), set()
    for s in segments:
        neigh[s["to_reader_id"]].add(s["from_reader_id"])
        if s["road_class"] not in ("arterial", "urban"):
            grade_sep |= {s["from_reader_id"], s["to_reader_id"]}
    for city, quota in C.RED_LIGHT_QUOTA.items():
        cand = [s for s in segments if s["city"] == city and s["road_class"] in ("arterial", "urban")
                and meta[s["to_reader_id"]]["named"] and len(neigh[s["to_reader_id"]]) >= 3
                and s["to_reader_id"] not in grade_sep and "interchange" not in rname[s["to_reader_id"]]]
        check(len(cand) >= quota, f"only {len(cand)} red-light candidates in {city}")
        for k in range(quota):
            s = cand[int((k + 0.5) * len(cand) / quota)]
            cycle = [90, 120, 150, 120][k % 4]
            sig = {"cycle_s": cycle, "red_s": int(round(cycle * 0.46)), "offset_s": (17 + 29 * k) % cycle}
            add(s, "red_light", s["length_m"], {"signal": sig}, f"Red-light camera at {rname[s['to_reader_id']]}")

    bus_lane_segs = {}
    for bl in C.BUS_LANES:
        segs = [s for s in segments if s["corridor"] == bl["corridor"]]
        bus_lane_segs[bl["bus_lane_id"]] = [s["segment_id"] for s in segs]
        for frac, d in bl["cameras"]:
            s = pick(bl["corridor"], frac, d)
            add(s, "bus_lane", int(s["length_m"] * 0.5), {"bus_lane_id": bl["bus_lane_id"]}, "Bus-lane camera")

    anpr = [pick(c, f, d) for c, f, d in C.ANPR_CAMERAS]
    anpr += [s for s in segments if meta[s["from_reader_id"]]["city"] != meta[s["to_reader_id"]]["city"]]
    for s in anpr:
        add(s, "anpr", int(s["length_m"] * 0.5), {}, "ANPR")
    cams.sort(key=city_then_id("camera_id"))
    return cams, bus_lane_segs


def build_parking(segments, readers, meta):
    counters, lots, gates = Counter(), [], []
    gcount = Counter()
    candidates = [s for s in segments if s["road_class"] not in ("expressway", "brt")]
    for key, name, zh, city, lon, lat, cap in C.LOTS:
        counters[city] += 1
        lot_id = f"{PREFIX[city]}-P{counters[city]:03d}"
        gids = []
        for gate, dlat in (("entry", 0.0002), ("exit", -0.0002)):
            gcount[city] += 1
            gid = f"{PREFIX[city]}-G{gcount[city]:04d}"
            gids.append(gid)
            gates.append({"reader_id": gid, "name": f"{name} {gate}", "name_zh": f"{zh}{'入口' if gate == 'entry' else '出口'}",
                          "city": city, "lat": round(lat + dlat, 5), "lon": round(lon, 5), "kind": "parking_gate",
                          "lot_id": lot_id, "gate": gate})
        seg = min(candidates, key=lambda s: (round(hav((lon, lat), meta[s["to_reader_id"]]["lonlat"]), 1), s["segment_id"]))
        lots.append({"lot_id": lot_id, "name": name, "name_zh": zh, "city": city, "lat": lat, "lon": lon,
                     "capacity": cap, "entry_reader_id": gids[0], "exit_reader_id": gids[1],
                     "segment_id": seg["segment_id"]})
    return lots, gates


# ---------------------------------------------------------------- rules.toml
def toml_list(ids, indent="  ", per_line=6):
    if not ids:
        return "[]"
    rows = [", ".join(f'"{i}"' for i in ids[k:k + per_line]) for k in range(0, len(ids), per_line)]
    return "[\n" + ",\n".join(indent + r for r in rows) + ",\n]"


def hours(h):
    return "[" + ", ".join(f'["{a}","{b}"]' for a, b in h) + "]"


def build_rules(segments, bus_lane_segs):
    tunnel = [s["segment_id"] for s in segments if s["road_class"] == "tunnel"]
    island = [s["segment_id"] for s in segments if s["on_island"]]
    huandao = [s["segment_id"] for s in segments if s["corridor"] == "huandao-rd"]
    out = [f'version = "{VERSION}"', "timezone_offset_minutes = 480   # China Standard Time (UTC+8), no DST", "",
           "# Generated by data/tools/build_city.py - edit the generator, not this file.",
           "# hours: list of [start, end) local-time windows \"HH:MM\"; empty list = all day.", "",
           "[section_speed]", 'rule_id = "R-SECTION-SPEED"', "rule_version = 1",
           "tolerance_pct = 10.0          # ticket when average speed > limit * (1 + tolerance_pct/100)", "",
           "[point_speed]", 'rule_id = "R-POINT-SPEED"', "rule_version = 1", "tolerance_pct = 10.0", "",
           "[red_light]", 'rule_id = "R-RED-LIGHT"', "rule_version = 1",
           "grace_ms = 500                # triggers within grace after red starts are not tickets", ""]
    for bl in C.BUS_LANES:
        bid = bl["bus_lane_id"]
        out += ["[[bus_lanes]]", f'bus_lane_id = "{bid}"', f'rule_id = "R-BUS-LANE-{bid[3:]}"', "rule_version = 1",
                f"segments = {toml_list(bus_lane_segs[bid])}", f"hours = {hours(bl['hours'])}",
                'allowed_classes = ["bus","school_bus","taxi"]', ""]
    zones = [("xiangan-tunnel", "Xiang'an subsea tunnel", tunnel),
             ("xiamen-island", "Xiamen island (Siming, Huli)", island),
             ("huandao-ring", "Huandao Rd scenic coastal ring", huandao)]
    for zid, name, segs in zones:
        out += ["[[zones]]", f'zone_id = "{zid}"', f'name = "{name}"', f"segments = {toml_list(segs)}", ""]
    restr = [("R-HAZMAT-XIANGAN-TUNNEL", "xiangan-tunnel", ["hazmat"], [], "hazardous goods never use the subsea tunnel"),
             ("R-TRUCK-ISLAND-PEAK", "xiamen-island", ["truck", "hazmat"], C.PEAKS, "no trucks on the island in peak hours"),
             ("R-MOTORCYCLE-ISLAND", "xiamen-island", ["motorcycle"], [], "motorcycles banned on Xiamen island"),
             ("R-TRUCK-HUANDAO", "huandao-ring", ["truck", "hazmat"], [], "no trucks on the Huandao Rd scenic ring")]
    for rid, zid, classes, hrs, why in restr:
        out += ["[[restrictions]]", f"# {why}", f'rule_id = "{rid}"', "rule_version = 1", f'zone_id = "{zid}"',
                "classes = [" + ",".join(f'"{c}"' for c in classes) + "]",
                f"hours = {hours(hrs)}" + ("                    # empty = all day" if not hrs else ""), ""]
    out += ["[cloned_plate]", 'rule_id = "R-CLONED-PLATE"', "rule_version = 1", "max_plausible_kmh = 250.0", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- validation
def validate(readers, segments, cameras, lots, routes, rules_text, meta):
    rby = {r["reader_id"]: r for r in readers}
    check(len(rby) == len(readers), "duplicate reader ids")
    sby = {s["segment_id"]: s for s in segments}
    check(len(sby) == len(segments), "duplicate segment ids")
    check(len({c["camera_id"] for c in cameras}) == len(cameras), "duplicate camera ids")
    check(len({l["lot_id"] for l in lots}) == len(lots), "duplicate lot ids")
    check(len({r["route_id"] for r in routes}) == len(routes), "duplicate route ids")
    stop_ids = [st["stop_id"] for r in routes for d in r["directions"] for st in d["stops"]]
    check(len(set(stop_ids)) == len(stop_ids), "duplicate stop ids")

    pairs = Counter()
    for s in segments:
        for k in ("from_reader_id", "to_reader_id"):
            check(s[k] in rby and rby[s[k]]["kind"] == "gantry", f"{s['segment_id']}: {k} {s[k]} is not a gantry")
        check(s["from_reader_id"] != s["to_reader_id"], f"{s['segment_id']} is a loop")
        check(s["length_m"] >= 300, f"{s['segment_id']} is {s['length_m']} m (< 300)")
        glen = sum(hav(p, q) for p, q in zip(s["geometry"], s["geometry"][1:]))
        check(abs(s["length_m"] / glen - 1) <= 0.15, f"{s['segment_id']} length {s['length_m']} vs geometry {glen:.0f}")
        check(s["free_flow_kmh"] <= s["speed_limit_kmh"], f"{s['segment_id']} free flow above limit")
        check(s["road_class"] in CLASSES, f"{s['segment_id']} bad class")
        check(s["segment_id"].startswith(PREFIX[s["city"]]) and rby[s["from_reader_id"]]["city"] == s["city"],
              f"{s['segment_id']} city/prefix mismatch")
        a, b = s["geometry"][0], s["geometry"][-1]
        fr, to = rby[s["from_reader_id"]], rby[s["to_reader_id"]]
        check(hav(a, (fr["lon"], fr["lat"])) < 5 and hav(b, (to["lon"], to["lat"])) < 5,
              f"{s['segment_id']} geometry does not start/end at its gantries")
        pairs[(s["from_reader_id"], s["to_reader_id"])] += 1
    check(len(segments) >= 320, f"only {len(segments)} directed segments")
    for (a, b), n in pairs.items():
        check(n == 1, f"two segments share reader pair {a}->{b}")
        check((b, a) in pairs, f"link {a}->{b} is one-way")

    # strong connectivity over all gantries
    gantries = [r["reader_id"] for r in readers if r["kind"] == "gantry"]
    fwd, bwd = defaultdict(list), defaultdict(list)
    for s in segments:
        fwd[s["from_reader_id"]].append(s["to_reader_id"])
        bwd[s["to_reader_id"]].append(s["from_reader_id"])
    for adj, label in ((fwd, "forward"), (bwd, "backward")):
        seen, stack = {gantries[0]}, [gantries[0]]
        while stack:
            for v in adj[stack.pop()]:
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        check(len(seen) == len(gantries), f"graph not strongly connected ({label}: {len(seen)}/{len(gantries)})")

    # at-grade crossings must share a gantry (BRT viaduct / expressway are grade-separated)
    legs = []
    for s in segments[0::2]:
        for p, q in zip(s["geometry"], s["geometry"][1:]):
            legs.append((s, p, q))
    for i, (s1, p1, q1) in enumerate(legs):
        for s2, p2, q2 in legs[i + 1:]:
            if s1["road_class"] in C.GRADE_SEPARATED_CLASSES or s2["road_class"] in C.GRADE_SEPARATED_CLASSES:
                continue
            if s1 is s2 or {s1["from_reader_id"], s1["to_reader_id"]} & {s2["from_reader_id"], s2["to_reader_id"]}:
                continue
            check(not crosses(p1, q1, p2, q2), f"{s1['segment_id']} and {s2['segment_id']} cross without a junction")

    kinds = Counter(c["kind"] for c in cameras)
    for k, n in (("speed", 20), ("red_light", 15), ("bus_lane", 10), ("anpr", 8)):
        check(kinds[k] >= n, f"only {kinds[k]} {k} cameras (need {n})")
    rules = tomllib.loads(rules_text)
    check(rules["version"] == VERSION and rules["timezone_offset_minutes"] == 480, "rules header")
    bl_segs = {b["bus_lane_id"]: set(b["segments"]) for b in rules["bus_lanes"]}
    check(len(bl_segs) >= 3, "need >= 3 bus lanes")
    zones = {z["zone_id"]: z for z in rules["zones"]}
    for z in zones.values():
        check(z["segments"] and all(x in sby for x in z["segments"]), f"zone {z['zone_id']} has unknown segments")
    for segs in bl_segs.values():
        check(all(x in sby for x in segs), "bus lane with unknown segment")
    for r in rules["restrictions"]:
        check(r["zone_id"] in zones, f"restriction {r['rule_id']} zone unknown")
    check(set(zones["xiangan-tunnel"]["segments"]) == {s["segment_id"] for s in segments if s["road_class"] == "tunnel"},
          "tunnel zone mismatch")
    for c in cameras:
        s = sby.get(c["segment_id"])
        check(s is not None, f"{c['camera_id']} on unknown segment")
        check(0 <= c["offset_m"] <= s["length_m"] and c.get("name"), f"{c['camera_id']} offset/name")
        check(c["camera_id"][:2] == PREFIX[s["city"]], f"{c['camera_id']} prefix")
        if c["kind"] == "red_light":
            check(c["offset_m"] == s["length_m"] and s["road_class"] in ("arterial", "urban"), f"{c['camera_id']} red light")
            sig = c["signal"]
            check(0 < sig["red_s"] < sig["cycle_s"] and 0 <= sig["offset_s"] < sig["cycle_s"]
                  and 28800 % sig["cycle_s"] == 0, f"{c['camera_id']} signal")  # epoch phase == local-midnight phase
        if c["kind"] == "bus_lane":
            check(c["segment_id"] in bl_segs.get(c["bus_lane_id"], ()), f"{c['camera_id']} not on its bus lane")
        if c["kind"] == "speed":
            check(c["speed_limit_kmh"] == s["speed_limit_kmh"], f"{c['camera_id']} limit")
    check(len(lots) == 30, f"{len(lots)} lots (need exactly 30)")
    for l in lots:
        check(150 <= l["capacity"] <= 2500 and l["segment_id"] in sby, f"{l['lot_id']} capacity/segment")
        for k, g in (("entry_reader_id", "entry"), ("exit_reader_id", "exit")):
            r = rby.get(l[k])
            check(r and r["kind"] == "parking_gate" and r["lot_id"] == l["lot_id"] and r["gate"] == g, f"{l['lot_id']} {k}")
    check(len(routes) >= 12, f"only {len(routes)} routes")
    inter = Counter(tuple(r["cities"]) for r in routes if r["kind"] == "intercity")
    check(inter[("xiamen", "zhangzhou")] >= 2 and inter[("xiamen", "quanzhou")] >= 2, f"intercity routes: {dict(inter)}")
    local = Counter(r["cities"][0] for r in routes if r["kind"] in ("bus", "brt") and len(r["cities"]) == 1)
    check(local["xiamen"] >= 6 and local["zhangzhou"] >= 1 and local["quanzhou"] >= 1, f"local routes: {dict(local)}")
    for r in routes:
        d0, d1 = r["directions"]
        for d in (d0, d1):
            segs = [sby[x] for x in d["segments"]]
            for a, b in zip(segs, segs[1:]):
                check(a["to_reader_id"] == b["from_reader_id"], f"{r['route_id']} dir {d['direction_id']} path broken")
                check(a["from_reader_id"] != b["to_reader_id"], f"{r['route_id']} dir {d['direction_id']} U-turn")
            check(len(set(d["segments"])) == len(segs), f"{r['route_id']} repeats a segment")
            index = {x: i for i, x in enumerate(d["segments"])}
            check(6 <= len(d["stops"]) <= 20, f"{r['route_id']} stop count")
            last = (-1, -1)
            for st in d["stops"]:
                check(st["segment_id"] in index and 0 <= st["offset_m"] <= sby[st["segment_id"]]["length_m"],
                      f"{st['stop_id']} not on path")
                key = (index[st["segment_id"]], st["offset_m"])
                check(key >= last, f"{st['stop_id']} out of order")
                last = key
        rev = [sby[x] for x in reversed(d0["segments"])]
        check([(s["to_reader_id"], s["from_reader_id"]) for s in rev] ==
              [(sby[x]["from_reader_id"], sby[x]["to_reader_id"]) for x in d1["segments"]], f"{r['route_id']} dir 1 not reverse")
        tt = r["timetable"]
        lo, hi = ((15, 30), (15, 30)) if r["kind"] == "intercity" else ((3, 10), (6, 15))
        check(all(lo[0] <= h["headway_min"] <= lo[1] for h in tt["headways"]) and hi[0] <= tt["default_headway_min"] <= hi[1],
              f"{r['route_id']} headways out of range")


# ---------------------------------------------------------------- output
def dumps(obj, level=0):
    ind = "  "
    if isinstance(obj, dict):
        items = [f"{ind * (level + 1)}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + ind * level + "}"
    if isinstance(obj, list):
        flat = all(not isinstance(x, (dict, list)) or
                   (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x)) for x in obj)
        if flat:
            return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
        return "[\n" + ",\n".join(ind * (level + 1) + dumps(x, level + 1) for x in obj) + "\n" + ind * level + "]"
    return json.dumps(obj, ensure_ascii=False)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def summary(readers, segments, cameras, lots, routes):
    print(f"Egret city data {VERSION}")
    print(f"  readers: {len(readers)}  " + ", ".join(
        f"{c}: {sum(r['city'] == c and r['kind'] == 'gantry' for r in readers)} gantries + "
        f"{sum(r['city'] == c and r['kind'] == 'parking_gate' for r in readers)} gates" for c in CITY_ORDER))
    print(f"  segments: {len(segments)} directed ({len(segments) // 2} links), "
          f"{sum(s['on_island'] for s in segments)} on island, "
          f"{sum(s['length_m'] for s in segments[0::2]) / 1000:.1f} km of road")
    print("    " + "city".ljust(10) + "".join(c.rjust(11) for c in CLASSES) + "total".rjust(8))
    for c in CITY_ORDER:
        row = [sum(s["city"] == c and s["road_class"] == k for s in segments) for k in CLASSES]
        print("    " + c.ljust(10) + "".join(str(n).rjust(11) for n in row) + str(sum(row)).rjust(8))
    kinds = ["speed", "red_light", "bus_lane", "anpr"]
    print(f"  cameras: {len(cameras)}")
    for c in CITY_ORDER:
        print("    " + c.ljust(10) + "  ".join(f"{k}={sum(x['camera_id'][:2] == PREFIX[c] and x['kind'] == k for x in cameras)}"
                                            for k in kinds))
    print("  parking lots: " + ", ".join(f"{c}={sum(l['city'] == c for l in lots)}" for c in CITY_ORDER))
    print(f"  routes: {len(routes)} (" + ", ".join(f"{k}={n}" for k, n in Counter(r["kind"] for r in routes).items()) + ")")
    for r in routes:
        d = r["directions"][0]
        km = sum(s["length_m"] for s in segments if s["segment_id"] in set(d["segments"])) / 1000
        print(f"    {r['route_id']:8} {'/'.join(r['cities']):17} {len(d['segments']):3} segs {km:6.1f} km "
              f"{len(d['stops']):2}+{len(r['directions'][1]['stops']):2} stops  {r['name']}")


def main():
    readers, meta, links = build_network()
    segments = build_segments(readers, meta, links)
    cameras, bus_lane_segs = build_cameras(segments, meta, readers)
    lots, gates = build_parking(segments, readers, meta)
    routes = build_routes(segments, meta, readers)
    rules_text = build_rules(segments, bus_lane_segs)
    all_readers = readers + gates
    validate(all_readers, segments, cameras, lots, routes, rules_text, meta)
    all_readers.sort(key=lambda r: (CITY_ORDER.index(r["city"]), r["kind"] != "gantry", r["reader_id"]))
    write(CITY_DIR / "readers.json", dumps({"version": VERSION, "readers": all_readers}))
    write(CITY_DIR / "segments.json", dumps({"version": VERSION, "segments": sorted(segments, key=city_then_id("segment_id"))}))
    write(CITY_DIR / "cameras.json", dumps({"version": VERSION, "cameras": cameras}))
    write(CITY_DIR / "parking.json", dumps({"version": VERSION, "lots": lots}))
    write(CITY_DIR / "routes.json", dumps({"version": VERSION, "routes": routes}))
    write(DATA / "rules.toml", rules_text)
    summary(all_readers, segments, cameras, lots, routes)


if __name__ == "__main__":
    try:
        main()
    except ValidationError as e:
        print(f"build_city.py: VALIDATION FAILED: {e}", file=sys.stderr)
        sys.exit(1)
