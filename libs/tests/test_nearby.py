"""The indexed nearby search (service_kit.nearby): its cover never misses a point, and on a real
MongoDB wire server (SecantusDB, or MONGODB_URI) near_filter + rank gives exactly the
brute-force answer through the cell index."""

import math
import random
import uuid

import pygeohash
import pymongo
import pytest

from platform_contracts.errors import InvalidValue
from platform_contracts.geo import EARTH_RADIUS_M, distance_m, geojson_point
from service_kit import nearby

RADII = (50, 150, 500, 1_000, 3_000, 10_000, 50_000)


def destination(lng: float, lat: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` from (lng, lat) along `bearing_deg`, on the same sphere."""
    angle, bearing, phi1 = metres / EARTH_RADIUS_M, math.radians(bearing_deg), math.radians(lat)
    phi2 = math.asin(math.sin(phi1) * math.cos(angle) + math.cos(phi1) * math.sin(angle) * math.cos(bearing))
    lam = math.radians(lng) + math.atan2(math.sin(bearing) * math.sin(angle) * math.cos(phi1),
                                         math.cos(angle) - math.sin(phi1) * math.sin(phi2))
    return (math.degrees(lam) + 540) % 360 - 180, math.degrees(phi2)


def matches(fragment: dict, document: dict) -> bool:
    """near_filter's fragment evaluated on a document as MongoDB would."""
    (path, condition), = fragment.items()
    _, key = path.split(".")
    return document[nearby.CELLS_FIELD][key] in condition["$in"]


# ---- the cover, without a database ---------------------------------------------------------

def test_cell_fields_are_the_geohash_at_each_precision():
    fields = nearby.cell_fields(117.0198, 36.6631)
    assert set(fields) == {nearby.CELLS_FIELD}
    for p in nearby.PRECISIONS:
        assert fields[nearby.CELLS_FIELD][f"g{p}"] == pygeohash.encode(36.6631, 117.0198, p)


@pytest.mark.parametrize("radius", RADII)
def test_the_cells_asked_for_stay_few_across_china(radius):
    rng = random.Random(radius)
    for _ in range(200):
        precision, cells = nearby.cover(rng.uniform(73, 135), rng.uniform(18, 54), radius)
        assert 1 <= len(cells) <= nearby.MAX_CELLS
        assert all(len(cell) == precision for cell in cells)
    # the finest precision that fits: a 50 m search looks at 38 x 19 m cells, a 50 km one at 39 x 20 km
    assert nearby.cover(117.0, 36.6, 50)[0] == 8 and nearby.cover(117.0, 36.6, 50_000)[0] == 4


@pytest.mark.parametrize("centre", [
    (117.0198, 36.6631), (121.4737, 31.2304), (87.6168, 43.8256), (126.6424, 53.4),  # in China
    (179.999, 10.0), (-179.995, -41.3), (0.0, 0.0), (12.5, 78.2), (-70.0, -84.0),   # the sphere's corners
    (30.0, 89.8), (150.0, -89.9),                                                   # circles holding a pole
])
def test_every_point_within_the_radius_is_in_a_cell_asked_for(centre):
    rng = random.Random(str(centre))
    for radius in RADII:
        fragment = nearby.near_filter(*centre, radius)
        for _ in range(300):
            # on the circle itself and just inside it, where a box too small would miss
            metres = radius * rng.choice([1.0, 0.9999, rng.random()])
            point = destination(*centre, rng.uniform(0, 360), metres)
            assert distance_m(*centre, *point) <= radius * (1 + 1e-6)
            assert matches(fragment, nearby.cell_fields(*point)), (centre, radius, point)


@pytest.mark.parametrize("radius", [0, -5, 50_000.5, float("nan"), float("inf"), True, "100", None])
def test_a_radius_out_of_bounds_is_an_invalid_value(radius):
    with pytest.raises(InvalidValue) as caught:
        nearby.near_filter(117.0, 36.6, radius)
    assert caught.value.field == ("radius_m",)


def test_rank_keeps_the_nearest_within_the_radius_in_order():
    centre = (117.0, 36.6)

    def at(ident, metres, bearing=0.0):
        return {"_id": ident, "location": geojson_point(*destination(*centre, bearing, metres))}

    documents = [at("far", 1_001), at("b", 500, 90), at("a", 500, 270), at("near", 10), at("edge", 999.99),
                 {"_id": "nowhere", "name": "no location"}, {"_id": "bad", "location": None}]
    ranked = nearby.rank(documents, *centre, 1_000, 10)
    assert [d["_id"] for d, _ in ranked] == ["near", "a", "b", "edge"]  # equal distances by _id
    assert [round(m, 2) for _, m in ranked] == [10.0, 500.0, 500.0, 999.99]
    assert [d["_id"] for d, _ in nearby.rank(documents, *centre, 1_000, 2)] == ["near", "a"]
    assert nearby.rank(iter(documents), *centre, 1_000, 0) == []


# ---- on a MongoDB wire server ----------------------------------------------------------------

CLUSTERS = [(117.0198, 36.6631), (120.3826, 36.0671), (118.0500, 36.8000)]  # Jinan, Qingdao, Zibo


@pytest.fixture(scope="module")
def points(mongodb_uri):
    """A collection of 5,000 points over Shandong: spread out, dense around three city centres,
    and some exactly on geohash cell edges and corners near the first."""
    rng = random.Random(5000)
    coordinates = [(rng.uniform(114.8, 122.7), rng.uniform(34.4, 38.4)) for _ in range(3_000)]
    for lng, lat in CLUSTERS:
        coordinates += [destination(lng, lat, rng.uniform(0, 360), rng.uniform(0, 2_000) ** 2 / 2_000)
                        for _ in range(600)]
    # the corners of the precision-8 (and so of every coarser) cells around the first centre
    box = pygeohash.decode_exactly(pygeohash.encode(CLUSTERS[0][1], CLUSTERS[0][0], 8))
    lat_step, lng_step = 2 * box[2], 2 * box[3]
    south, west = box[0] - box[2], box[1] - box[3]
    coordinates += [(west + i * lng_step, south + j * lat_step) for i in range(-10, 10) for j in range(-10, 10)][:200]
    documents = [{"_id": f"p{i:05d}", "status": "active" if i % 3 else "closed",
                  nearby.LOCATION_FIELD: geojson_point(lng, lat), **nearby.cell_fields(lng, lat)}
                 for i, (lng, lat) in enumerate(coordinates)]
    client = pymongo.MongoClient(mongodb_uri)
    database = client[f"nearby_{uuid.uuid4().hex[:8]}"]
    nearby.ensure_indexes(database.points)
    for start in range(0, len(documents), 1_000):
        database.points.insert_many(documents[start:start + 1_000])
    yield database.points, documents
    client.drop_database(database.name)
    client.close()


def brute_force(documents, lng, lat, radius, limit, status=None) -> list[tuple[str, float]]:
    found = [(distance_m(lng, lat, *d["location"]["coordinates"]), d["_id"]) for d in documents
             if status is None or d["status"] == status]
    return [(ident, metres) for metres, ident in sorted(found) if metres <= radius][:limit]


def centres(documents) -> list[tuple[float, float]]:
    rng = random.Random(7)
    return [*CLUSTERS, tuple(documents[-1]["location"]["coordinates"]),  # a cell corner
            *(tuple(rng.choice(documents)["location"]["coordinates"]) for _ in range(3)),
            *((rng.uniform(115.5, 122), rng.uniform(35, 37.8)) for _ in range(3))]


def test_near_filter_and_rank_give_exactly_the_brute_force_answer(points):
    collection, documents = points
    answered = 0
    for lng, lat in centres(documents):
        for radius in RADII:
            for limit in (10, 100_000):
                candidates = list(collection.find(nearby.near_filter(lng, lat, radius)))
                got = [(d["_id"], m) for d, m in nearby.rank(candidates, lng, lat, radius, limit)]
                assert got == brute_force(documents, lng, lat, radius, limit), (lng, lat, radius, limit)
                answered += bool(got)
    assert answered > 100  # the comparisons were about something


def test_with_the_callers_conditions_and_find_near(points):
    collection, documents = points
    query = {"$and": [{"status": "active"}]}  # nested, as the station repository builds it
    for lng, lat in centres(documents)[:5]:
        for radius in (500, 3_000, 10_000):
            expected = brute_force(documents, lng, lat, radius, 20, status="active")
            found = collection.aggregate(nearby.near_pipeline(lng, lat, radius, query))
            assert [(d["_id"], m) for d, m in nearby.rank(found, lng, lat, radius, 20)] == expected
            near = nearby.find_near(collection, lng, lat, radius, 20, query, projection={"status": 1})
            assert [(d["_id"], m) for d, m in near] == expected
            assert all(set(d) == {"_id", "status", "location"} for d, _ in near)
    # in a transaction, as a service's unit of work runs it
    client = collection.database.client
    with client.start_session() as session, session.start_transaction():
        collection.update_one({"_id": "p00001"}, {"$set": {"status": "closed"}}, session=session)
        lng, lat = documents[1]["location"]["coordinates"]
        near = nearby.find_near(collection, lng, lat, 1_000, 5, {"status": "active"}, session=session)
        assert "p00001" not in [d["_id"] for d, _ in near]
        session.abort_transaction()


def _nodes(tree):
    """Every dict in an explain output, whatever its shape (find, aggregate, SBE or classic)."""
    if isinstance(tree, dict):
        yield tree
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            yield from _nodes(item)


def test_the_search_is_answered_through_the_cell_index(points):
    collection, documents = points
    database = collection.database
    lng, lat = CLUSTERS[0]
    for radius in (50, 3_000, 10_000):
        fragment = nearby.near_filter(lng, lat, radius)
        (field, condition), = fragment.items()
        candidates = collection.count_documents(fragment)
        assert 0 < candidates < len(documents) / 2  # so examining them all is not a scan
        for command in ({"find": collection.name, "filter": fragment},
                        {"aggregate": collection.name, "cursor": {},
                         "pipeline": nearby.near_pipeline(lng, lat, radius, {"$and": [{"status": "active"}]},
                                                          projection={"status": 1})}):
            explained = database.command("explain", command, verbosity="executionStats")
            stages = [node for node in _nodes(explained) if "stage" in node]
            scans = {str(node["keyPattern"]) for node in stages if node["stage"] == "IXSCAN" and "keyPattern" in node}
            assert scans == {str({field: 1})}, explained
            assert not [node for node in stages if node["stage"] == "COLLSCAN"], explained
            examined = [node["totalDocsExamined"] for node in _nodes(explained) if "totalDocsExamined" in node]
            assert examined and max(examined) == candidates, explained


def test_the_indexes(points):
    collection, _ = points
    keys = [dict(index["key"]) for index in collection.list_indexes()]
    for precision in nearby.PRECISIONS:
        assert {f"cells.g{precision}": 1} in keys
    assert {"location": "2dsphere"} in keys


def test_indexes_can_be_made_again_as_every_start_and_migrate_does(mongodb_uri):
    """A second ensure_indexes (a restart, a migrate after a start) on SecantusDB once failed:
    it refuses to create again the 2dsphere index it holds (code 86)."""
    client = pymongo.MongoClient(mongodb_uri)
    try:
        collection = client[f"nearby_again_{uuid.uuid4().hex[:8]}"].stations
        nearby.ensure_indexes(collection)
        nearby.ensure_indexes(collection)
        assert f"{nearby.LOCATION_FIELD}_2dsphere" in collection.index_information()
    finally:
        client.close()
