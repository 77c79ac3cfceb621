"""Coordinate systems, conversion, distance and the location input (platform_contracts.geo)."""

import math
import random
import warnings

import pytest
from pydantic import BaseModel, ValidationError

from platform_contracts import geo
from platform_contracts.errors import InvalidValue
from platform_contracts.geo import CoordSys, Location

TIANANMEN_WGS84 = (116.391275, 39.907499)
JINAN_QUANCHENG_SQUARE = (117.0198, 36.6631)

# Published by an independent implementation (googollee/eviltransform, python/test.py), as
# (wgs lng, wgs lat, gcj lng, gcj lat).
EVILTRANSFORM_WGS_GCJ = [
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),  # Shanghai
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),  # Shenzhen
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),  # Beijing
]


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return geo.distance_m(*a, *b)


# ---- conversion ----------------------------------------------------------------------------

def test_wgs84_to_gcj02_matches_an_independent_published_implementation():
    for wgs_lng, wgs_lat, gcj_lng, gcj_lat in EVILTRANSFORM_WGS_GCJ:
        lng, lat = geo.wgs84_to_gcj02(wgs_lng, wgs_lat)
        assert lng == pytest.approx(gcj_lng, abs=1e-7) and lat == pytest.approx(gcj_lat, abs=1e-7)
        # and back, to the centimetre
        assert metres(geo.to_wgs84(gcj_lng, gcj_lat, "gcj02"), (wgs_lng, wgs_lat)) < 0.01


def test_tiananmen_in_gcj02_is_where_amap_shows_it():
    gcj = geo.wgs84_to_gcj02(*TIANANMEN_WGS84)
    # The formula's value (prcoords and eviltransform agree); a figure of 116.397519, 39.908720
    # quoted for it elsewhere is 20 m off in latitude.
    assert gcj == pytest.approx((116.397516, 39.908900), abs=1e-6)
    assert 500 < metres(gcj, TIANANMEN_WGS84) < 600


def test_gcj02_round_trip_is_under_a_metre_across_china():
    rng = random.Random(20260601)
    worst = 0.0
    for _ in range(2000):
        point = (rng.uniform(100, 122), rng.uniform(22, 45))
        if not geo.in_china(*point):
            continue
        back = geo.to_wgs84(*geo.wgs84_to_gcj02(*point), CoordSys.gcj02)
        worst = max(worst, metres(back, point))
    assert worst < 0.05  # the iterative inverse; the one-step inverse is off by metres


def test_bd09_conversion():
    # Published by another independent implementation (wandergis/coordtransform, test/app.js):
    # BD-09 116.404, 39.915 is GCJ-02 116.39762729119315, 39.90865673957631.
    gcj_lng, gcj_lat = 116.39762729119315, 39.90865673957631
    expected = geo.to_wgs84(gcj_lng, gcj_lat, "gcj02")
    assert metres(geo.to_wgs84(116.404, 39.915, "bd09"), expected) < 0.05
    # BD-09 -> WGS-84 -> GCJ-02 lands on the published GCJ-02 point
    assert metres(geo.wgs84_to_gcj02(*geo.to_wgs84(116.404, 39.915, CoordSys.bd09)), (gcj_lng, gcj_lat)) < 0.05
    # BD-09 is about 1 km from WGS-84 in Beijing
    assert 500 < metres((116.404, 39.915), geo.to_wgs84(116.404, 39.915, "bd09")) < 1500


def test_wgs84_is_kept_and_an_unknown_system_is_refused():
    assert geo.to_wgs84(117.0, 36.6, "wgs84") == (117.0, 36.6)
    with pytest.raises(ValueError):
        geo.to_wgs84(117.0, 36.6, "utm")


def test_the_offset_between_wgs84_and_gcj02_in_jinan_is_hundreds_of_metres():
    offset = metres(JINAN_QUANCHENG_SQUARE, geo.wgs84_to_gcj02(*JINAN_QUANCHENG_SQUARE))
    assert 100 < offset < 1000


def test_gcj02_applies_only_in_china():
    london = (-0.1276, 51.5072)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # prcoords warns when asked to shift a point outside China
        assert geo.wgs84_to_gcj02(*london) == london
        assert geo.to_wgs84(*london, "gcj02") == london
        assert geo.distance_m(*london, *geo.to_wgs84(*london, "bd09")) > 100  # Baidu's shift only


@pytest.mark.parametrize("lng, lat, inside", [
    (117.0009, 36.6758, True),    # Jinan
    (121.4737, 31.2304, True),    # Shanghai
    (87.6168, 43.8256, True),     # Urumqi
    (91.1409, 29.6456, True),     # Lhasa
    (110.3312, 20.0311, True),    # Haikou, Hainan
    (126.6424, 45.7567, True),    # Harbin
    (121.5654, 25.0330, False),   # Taipei
    (126.9780, 37.5665, False),   # Seoul
    (106.9057, 47.8864, False),   # Ulaanbaatar
    (105.8342, 21.0278, False),   # Hanoi
    (0.0, 0.0, False),
    (36.6758, 117.0009, False),   # Jinan with lng and lat swapped (and lat out of range)
    (36.6758, 17.0009, False),    # swapped, in range
    (-0.1276, 51.5072, False),    # London
])
def test_in_china(lng, lat, inside):
    assert geo.in_china(lng, lat) is inside


# ---- distance ------------------------------------------------------------------------------

def test_distance_is_the_great_circle():
    assert geo.distance_m(117.0, 36.6, 117.0, 36.6) == 0
    # one degree of latitude on the sphere
    assert geo.distance_m(117.0, 36.0, 117.0, 37.0) == pytest.approx(2 * math.pi * geo.EARTH_RADIUS_M / 360)
    # Jinan to Qingdao: about 310 km as the crow flies
    assert 300_000 < geo.distance_m(117.0009, 36.6758, 120.3826, 36.0671) < 320_000
    assert geo.distance_m(1, 2, 3, 4) == geo.distance_m(3, 4, 1, 2)
    assert geo.distance_m(0, 0, 180, 0) == pytest.approx(math.pi * geo.EARTH_RADIUS_M)


# ---- the location input --------------------------------------------------------------------

class Body(BaseModel):
    location: Location


def errors_of(payload) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"location": payload})
    return caught.value.errors()


def test_a_location_defaults_to_wgs84_and_converts():
    wgs = Location(lng=117.0, lat=36.65)
    assert wgs.coord_sys is CoordSys.wgs84 and wgs.wgs84() == (117.0, 36.65)
    gcj = Location.model_validate({"lng": 116.397516, "lat": 39.9089, "coord_sys": "gcj02"})
    assert metres(gcj.wgs84(), TIANANMEN_WGS84) < 0.5
    assert Location.model_validate_json('{"lng": 117, "lat": 36}').wgs84() == (117.0, 36.0)


@pytest.mark.parametrize("payload, field", [
    ({"lng": 181.0, "lat": 36.0}, "lng"),
    ({"lng": -180.5, "lat": 36.0}, "lng"),
    ({"lng": 117.0, "lat": 90.01}, "lat"),
    ({"lng": 117.0, "lat": -91}, "lat"),
    ({"lng": float("nan"), "lat": 36.0}, "lng"),
    ({"lng": 117.0, "lat": float("inf")}, "lat"),
    ({"lng": True, "lat": 36.0}, "lng"),
    ({"lng": 117.0, "lat": "36.6"}, "lat"),
    ({"lng": None, "lat": 36.6}, "lng"),
    ({"lat": 36.6}, "lng"),
    ({"lng": 117.0, "lat": 36.6, "coord_sys": "utm"}, "coord_sys"),
    ({"lng": 117.0, "lat": 36.6, "coord_sys": None}, "coord_sys"),
    ({"lng": 117.0, "lat": 36.6, "altitude": 10}, "altitude"),
])
def test_a_bad_value_is_refused_naming_its_field(payload, field):
    assert [e["loc"] for e in errors_of(payload)] == [("location", field)]


@pytest.mark.parametrize("payload", [
    {"lng": 36.6758, "lat": 17.0009},          # swapped
    {"lng": 0, "lat": 0},
    {"lng": 121.5654, "lat": 25.0330},         # Taipei
    {"lng": -0.1276, "lat": 51.5072, "coord_sys": "gcj02"},
])
def test_a_location_outside_china_is_refused_naming_the_location(payload):
    errors = errors_of(payload)
    assert [e["loc"] for e in errors] == [("location",)]
    assert "not in mainland China" in errors[0]["msg"]


def test_a_json_boolean_or_nan_is_refused():
    for text in ('{"lng": true, "lat": 36}', '{"lng": 117, "lat": NaN}', '{"lng": "117", "lat": 36}'):
        with pytest.raises(ValidationError):
            Location.model_validate_json(text)


# ---- stored and presented forms ------------------------------------------------------------

def test_geojson_point_and_present():
    assert geo.geojson_point(117.0, 36.6) == {"type": "Point", "coordinates": [117.0, 36.6]}
    shown = geo.present(*TIANANMEN_WGS84)
    assert shown == {"location": {"lng": 116.391275, "lat": 39.907499},
                     "location_gcj02": {"lng": 116.397516, "lat": 39.9089}}
    assert geo.present(117.12345678, 36.1)["location"] == {"lng": 117.123457, "lat": 36.1}


# ---- near=LNG,LAT --------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("117.0009,36.6758", (117.0009, 36.6758)),
    (" 117.0009 , 36.6758 ", (117.0009, 36.6758)),
    ("117.0009,36.6758\n", (117.0009, 36.6758)),
    ("117,36", (117.0, 36.0)),
    ("+117.5,36.", (117.5, 36.0)),
    ("1.17e2,3.6e1", (117.0, 36.0)),
])
def test_near_is_parsed(value, expected):
    assert geo.parse_near(value) == expected


@pytest.mark.parametrize("value", [
    "", ",", "117.0", "117.0,", ",36.6", "117.0,36.6,5", "117.0;36.6", "117.0 36.6",
    "nan,36.6", "117.0,inf", "-inf,36", "1e999,36", "0x75,36", "1_17,36", "117.0,abc", ".,36",
    "true,36", "１１７,36", "117,٣٦",
    "200,36", "117,91",          # out of range
    "36.6758,117.0009",          # swapped
    "0,0",                       # outside China
])
def test_a_malformed_near_is_an_invalid_value_naming_near(value):
    with pytest.raises(InvalidValue) as caught:
        geo.parse_near(value)
    assert caught.value.field == ("near",)
    assert caught.value.msg


@pytest.mark.parametrize("value", [None, True, 117.0, ["117", "36"]])
def test_near_must_be_a_string(value):
    with pytest.raises(InvalidValue) as caught:
        geo.parse_near(value)
    assert caught.value.field == ("near",)


def test_coord_sys_query_parameter():
    assert geo.parse_coord_sys(None) is CoordSys.wgs84
    assert geo.parse_coord_sys("bd09") is CoordSys.bd09
    with pytest.raises(InvalidValue) as caught:
        geo.parse_coord_sys("GCJ02")
    assert caught.value.field == ("coord_sys",)
