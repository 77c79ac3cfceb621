"""Nearby search through an ordinary index: one code path, fast on SecantusDB and correct on
MongoDB.

SecantusDB (local runs and tests, ARCHITECTURE.md) answers `$geoNear` and `$geoWithin` by
scanning the collection (about 5 s a query over 50,000 points), so the search does not use
them. Each document carries, beside its GeoJSON `location` (WGS-84), the geohash of that point
at several precisions, each its own indexed field:

    {"location": {"type": "Point", "coordinates": [lng, lat]},
     "cells": {"g4": "wwe0", "g5": "wwe0q", "g6": "wwe0qr", "g7": "wwe0qru", "g8": "wwe0qrus"}}

A search for the points within r metres of (lng, lat) takes the latitude/longitude box that
holds that circle (exact on the sphere, with a small margin), picks the finest precision at
which the box is covered by at most MAX_CELLS geohash cells, asks for `cells.g<p> $in [those
cells]` (an index lookup per cell, on SecantusDB and MongoDB alike), and `rank` then computes
the exact great-circle distance of each candidate, keeps those within r and sorts them. Every
point within r lies in the box, and so in one of the cells: nothing is missed, and what is
returned is exactly the brute-force answer. From 50 m to 50 km at China's latitudes a search
asks for 4 to 42 cells and reads about 1 to 4 times as many documents as lie within the radius
(bench/nearby_query.py: 3 km p50 1.1 ms, 10 km 4.6 ms, over 50,000 points).

Geohash rather than H3: compared once over the same 50,000 points (H3 4.5, cells at
resolutions 4-10, a k-ring disk around the centre's cell with k drawn from the local edge
length), geohash was as fast or faster at every radius (p50 at 3 km 2.0 vs 2.3 ms, 10 km 5.6
vs 8.5 ms, 50 km 101 vs 148 ms), both were exact on every sample, and only geohash's cover is
exact by construction (rectangles in latitude and longitude), where a hexagon disk needs a
margin for the cells' distortion.

Combining it with the caller's own conditions: SecantusDB 0.7's planner uses an index only
when the whole filter is one indexed field (or a compound index's exact shape); a filter such as
`{"$and": [near_filter(...), {"status": "active"}]}`, or the same fields side by side in one
document, is answered by scanning the collection (measured: 16 candidates among 50,000 points,
13 ms through the index, 1.3 s so). So the caller's conditions go in a second `$match`
(`near_pipeline`, `find_near`): SecantusDB answers the first `$match` through the cell index and
applies the second to the candidates; MongoDB coalesces the two into one query and plans it as
usual. A bare `find(near_filter(...))` is indexed on both.

Callers: `$set` `cell_fields(lng, lat)` beside `LOCATION_FIELD` whenever a location is written
(and again when it changes), call `ensure_indexes` once, and search with
`find_near(collection, lng, lat, r, limit, query)` — or `aggregate(near_pipeline(...))` /
`find(near_filter(...))` and `rank(...)`. Candidates must include `LOCATION_FIELD` (mind a
projection)."""

import heapq
import math
from collections.abc import Iterable

import pygeohash
from pymongo import ASCENDING, GEOSPHERE

from platform_contracts.errors import InvalidValue
from platform_contracts.geo import EARTH_RADIUS_M, distance_m

LOCATION_FIELD = "location"  # GeoJSON point, WGS-84
CELLS_FIELD = "cells"
# Geohash precisions stored (characters); cell sizes at 36 N (Shandong), east-west x north-south:
# 4: 31.6 x 19.5 km, 5: 3.96 x 4.89 km, 6: 0.99 x 0.61 km, 7: 124 x 153 m, 8: 31 x 19 m.
PRECISIONS = (4, 5, 6, 7, 8)
MAX_CELLS = 50  # the largest $in list a search asks for (but see `cover` on the poles)
MAX_RADIUS_M = 50_000
# Added to the radius when the box is drawn, so that rounding never leaves a point within the
# radius outside it (the exact distances in `rank` decide what is returned).
_MARGIN = 1.001
_MARGIN_M = 1.0


def cell_field(precision: int) -> str:
    return f"{CELLS_FIELD}.g{precision}"


def cell_fields(lng: float, lat: float) -> dict:
    """The fields to `$set` beside a document's location (WGS-84)."""
    code = pygeohash.encode(lat, lng, max(PRECISIONS))
    return {CELLS_FIELD: {f"g{p}": code[:p] for p in PRECISIONS}}


def ensure_indexes(collection, geospatial: bool = True) -> None:
    """An index per cell precision (what near_filter looks up), and (unless `geospatial` is
    False) a 2dsphere index on the location for operators' ad-hoc `$geoNear`/`$geoWithin`
    queries on MongoDB. Measured on SecantusDB: inserts with the five cell indexes ~1,500/s
    one at a time, with the 2dsphere index as well ~630/s (no index: ~2,700/s)."""
    for precision in PRECISIONS:
        collection.create_index([(cell_field(precision), ASCENDING)])
    # Asked for only when missing: SecantusDB refuses to create again a 2dsphere index it holds
    # (code 86: it records the 2dsphereIndexVersion, which a second request leaves out).
    if geospatial and f"{LOCATION_FIELD}_{GEOSPHERE}" not in collection.index_information():
        collection.create_index([(LOCATION_FIELD, GEOSPHERE)])


def _check_radius(radius_m) -> float:
    if (isinstance(radius_m, bool) or not isinstance(radius_m, (int, float)) or not math.isfinite(radius_m)
            or not 0 < radius_m <= MAX_RADIUS_M):
        raise InvalidValue("radius_m", f"must be more than 0 and at most {MAX_RADIUS_M} metres")
    return float(radius_m)


def _boxes(lng: float, lat: float, radius_m: float) -> list[tuple[float, float, float, float]]:
    """(south, west, north, east) boxes, in degrees, that together hold every point within
    radius_m of (lng, lat): one, or two where the circle crosses the antimeridian."""
    angle = (radius_m * _MARGIN + _MARGIN_M) / EARTH_RADIUS_M  # radians of arc
    south, north = lat - math.degrees(angle), lat + math.degrees(angle)
    if south <= -90 or north >= 90 or math.sin(angle) >= math.cos(math.radians(lat)):
        # The circle holds a pole: every longitude.
        return [(max(south, -90.0), -180.0, min(north, 90.0), 180.0)]
    # The widest longitude a circle of this angle reaches from this latitude (on the sphere).
    half_width = math.degrees(math.asin(math.sin(angle) / math.cos(math.radians(lat))))
    west, east = lng - half_width, lng + half_width
    if west < -180:
        return [(south, west + 360, north, 180.0), (south, -180.0, north, east)]
    if east > 180:
        return [(south, west, north, 180.0), (south, -180.0, north, east - 360)]
    return [(south, west, north, east)]


def _cell_count(boxes, precision: int) -> int:
    bits = 5 * precision
    lat_step, lng_step = 180 / (1 << (bits // 2)), 360 / (1 << ((bits + 1) // 2))
    return sum((math.floor((n + 90) / lat_step) - math.floor((s + 90) / lat_step) + 1)
               * (math.floor((e + 180) / lng_step) - math.floor((w + 180) / lng_step) + 1)
               for s, w, n, e in boxes)


def cover(lng: float, lat: float, radius_m: float) -> tuple[int, list[str]]:
    """The precision and the geohash cells a search around (lng, lat) looks up: the finest
    precision whose cells covering the circle's box are at most MAX_CELLS (the coarsest where
    none is, which only a circle around a pole needs)."""
    boxes = _boxes(lng, lat, _check_radius(radius_m))
    precision = next((p for p in sorted(PRECISIONS, reverse=True) if _cell_count(boxes, p) <= MAX_CELLS),
                     min(PRECISIONS))
    cells: set[str] = set()
    for south, west, north, east in boxes:
        cells.update(pygeohash.geohashes_in_box(pygeohash.BoundingBox(south, west, north, east), precision))
    return precision, sorted(cells)


def near_filter(lng: float, lat: float, radius_m: float) -> dict:
    """A filter matching (a few times over) the documents within radius_m metres of (lng, lat),
    WGS-84, through one cell index; give what it finds to `rank`. It is indexed on SecantusDB
    only as the whole filter or a `$match` of its own (see the module's note: AND it with the
    caller's conditions through `near_pipeline`, not `$and`). radius_m must be in
    (0, MAX_RADIUS_M]; another is an InvalidValue naming radius_m."""
    precision, cells = cover(lng, lat, radius_m)
    return {cell_field(precision): {"$in": cells}}


def near_pipeline(lng: float, lat: float, radius_m: float, query: dict | None = None,
                  projection: dict | None = None) -> list[dict]:
    """An aggregation pipeline of the candidates near (lng, lat) that also match `query`:
    near_filter's `$match`, then the query's own `$match` (and a `$project` that keeps
    LOCATION_FIELD). Indexed on SecantusDB and MongoDB alike; rank what it returns."""
    pipeline = [{"$match": near_filter(lng, lat, radius_m)}]
    if query:
        pipeline.append({"$match": query})
    if projection:
        if not any(v in (0, False) for k, v in projection.items() if k != "_id"):
            projection = {**projection, LOCATION_FIELD: 1}
        pipeline.append({"$project": projection})
    return pipeline


def document_point(document: dict) -> tuple[float, float] | None:
    """(lng, lat) of a document's location, None if it has none."""
    point = document.get(LOCATION_FIELD)
    if not isinstance(point, dict) or point.get("type") != "Point":
        return None
    lng, lat = point["coordinates"][:2]
    return lng, lat


def rank(documents: Iterable[dict], lng: float, lat: float, radius_m: float, limit: int) -> list[tuple[dict, float]]:
    """(document, metres) for the documents within radius_m of (lng, lat), nearest first (equal
    distances by `_id`), at most `limit` of them."""
    radius_m = _check_radius(radius_m)
    within = []
    for document in documents:
        point = document_point(document)
        if point is None:
            continue
        metres = distance_m(lng, lat, *point)
        if metres <= radius_m:
            within.append((metres, str(document.get("_id")), document))
    return [(document, metres) for metres, _, document in heapq.nsmallest(limit, within, key=lambda t: t[:2])]


def find_near(collection, lng: float, lat: float, radius_m: float, limit: int, query: dict | None = None,
              projection: dict | None = None, session=None) -> list[tuple[dict, float]]:
    """(document, metres) for the documents within radius_m of (lng, lat) that match `query`,
    nearest first, at most `limit`: near_pipeline, ranked."""
    pipeline = near_pipeline(lng, lat, radius_m, query, projection)
    return rank(collection.aggregate(pipeline, session=session), lng, lat, radius_m, limit)
