"""Locations of stations and appeals: coordinate systems, conversion, distance, and the
contract's location input (CONTRACT.md: `{lng, lat, coord_sys}`; responses give `location`
in WGS-84 and `location_gcj02`). Pure: no database, no broker, no HTTP.

Coordinate systems (`CoordSys`):
- `wgs84`: GPS, and what the platform stores (a GeoJSON point, `geojson_point`).
- `gcj02`: the obfuscated datum mainland Chinese maps use by law (Amap/Gaode, Tencent):
  what a rider's app gives. It differs from WGS-84 by hundreds of metres.
- `bd09`: Baidu's further offset of GCJ-02.

The conversions are prcoords' (the formulas everyone uses, from the leaked GCJ-02 code), with
its iterative inverse for GCJ-02 -> WGS-84 and BD-09 -> GCJ-02: measured here over 20,000
random points in China, WGS -> GCJ -> WGS comes back within 5 mm (the one-step inverse most
libraries use is off by up to 4.6 m). GCJ-02 shifts only points inside China (`in_china`);
elsewhere it equals WGS-84."""

import math
import re
from enum import StrEnum
from typing import Annotated

import prcoords
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InvalidValue

# Mean Earth radius (IUGG R1). A great circle on this sphere differs from the WGS-84 ellipsoid's
# geodesic by at most ~0.5 %: 15 m in 3 km, well inside what "nearby" means.
EARTH_RADIUS_M = 6_371_008.8


class CoordSys(StrEnum):
    wgs84 = "wgs84"
    gcj02 = "gcj02"
    bd09 = "bd09"


# ---- where GCJ-02 applies ------------------------------------------------------------------

# Mainland China as a union of rectangles less a few (west, south, east, north in degrees), the
# coarse outline published with the GCJ-02 formulas (Aimeast, 2012) and carried by many
# implementations since. It takes in the mainland and Hainan, Hong Kong and Macau (Amap applies
# GCJ-02 there too), and leaves out Taiwan, Mongolia, the Korean peninsula south of 39.4 N,
# Vietnam's north and Russia's Far East. It is coarse near land borders (tens of kilometres),
# which is enough for what it decides here: whether GCJ-02's shift applies, and whether a
# location can be a place on this platform at all (a swapped lng/lat, a 0,0 or a point on
# another continent is refused).
CHINA_REGIONS = (
    (79.4462, 42.8899, 96.3300, 49.2204),
    (109.6872, 39.3742, 135.0002, 54.1415),
    (73.1246, 29.5297, 124.143255, 42.8899),
    (82.9684, 26.7186, 97.0352, 29.5297),
    (97.0253, 20.414096, 124.367395, 29.5297),
    (107.975793, 17.871542, 111.744104, 20.414096),
)
CHINA_EXCLUDED = (
    (119.921265, 21.785006, 122.497559, 25.398623),  # Taiwan
    (101.865200, 20.098800, 106.665000, 22.284000),  # northern Laos and Vietnam
    (106.452500, 20.487800, 108.051000, 21.542200),  # the Gulf of Tonkin coast of Vietnam
    (109.032300, 50.325700, 119.127000, 55.817500),  # Russia and Mongolia north of Inner Mongolia
    (127.456800, 49.557400, 137.022700, 55.817500),  # Russia north of the Amur
    (131.266200, 42.569200, 137.022700, 44.892200),  # Primorsky Krai
)


def _inside(box: tuple[float, float, float, float], lng: float, lat: float) -> bool:
    west, south, east, north = box
    return west <= lng <= east and south <= lat <= north


def in_china(lng: float, lat: float) -> bool:
    """Whether (lng, lat) lies in the area where GCJ-02 applies (CHINA_REGIONS less
    CHINA_EXCLUDED). The outline is coarse: a coordinate of any of the three systems may be
    given, their differences (under 2 km) do not matter at its scale."""
    return (any(_inside(box, lng, lat) for box in CHINA_REGIONS)
            and not any(_inside(box, lng, lat) for box in CHINA_EXCLUDED))


# ---- conversion and distance ---------------------------------------------------------------

def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """GCJ-02 of a WGS-84 point; the point itself outside China."""
    if not in_china(lng, lat):
        return lng, lat
    shifted = prcoords.wgs_gcj((lat, lng), False)
    return shifted.lon, shifted.lat


def _gcj02_to_wgs84(lng: float, lat: float) -> tuple[float, float]:
    if not in_china(lng, lat):
        return lng, lat
    # Iterates the forward shift to a fixed point (Caijun's method): about 0.1 mm.
    wgs = prcoords.gcj_wgs_bored((lat, lng), False)
    return wgs.lon, wgs.lat


def to_wgs84(lng: float, lat: float, coord_sys: CoordSys | str) -> tuple[float, float]:
    """WGS-84 of a point given in `coord_sys` (a CoordSys or its value; another is a ValueError)."""
    system = CoordSys(coord_sys)
    if system is CoordSys.wgs84:
        return lng, lat
    if system is CoordSys.bd09:
        # BD-09 is a shift of GCJ-02 everywhere; undone iteratively as well (~1e-7 degrees).
        gcj = prcoords.bd_gcj_bored((lat, lng), False)
        lng, lat = gcj.lon, gcj.lat
    return _gcj02_to_wgs84(lng, lat)


def distance_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine on a sphere of EARTH_RADIUS_M)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    h = (math.sin((phi2 - phi1) / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


# ---- the contract's input and output -------------------------------------------------------

# Strict: a JSON number (an integer is one), never a boolean or a numeric string; finite.
Longitude = Annotated[float, Field(strict=True, ge=-180, le=180, allow_inf_nan=False,
                                   description="longitude in degrees, east positive")]
Latitude = Annotated[float, Field(strict=True, ge=-90, le=90, allow_inf_nan=False,
                                  description="latitude in degrees, north positive")]

OUTSIDE_CHINA = "is not in mainland China (is it lng, lat in that order?)"


class Location(BaseModel):
    """A location as a request gives it. A point outside China is refused naming the location
    itself (the field holding this model); a value out of range names `lng` or `lat`."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "description": "a point in mainland China, in WGS-84 (default), GCJ-02 (Amap/Gaode, Tencent) "
                       "or BD-09 (Baidu); stored in WGS-84"})

    lng: Longitude
    lat: Latitude
    coord_sys: CoordSys = Field(CoordSys.wgs84, description="the coordinate system of lng and lat")

    @model_validator(mode="after")
    def _in_china(self):
        if not in_china(self.lng, self.lat):
            raise ValueError(OUTSIDE_CHINA)
        return self

    def wgs84(self) -> tuple[float, float]:
        return to_wgs84(self.lng, self.lat, self.coord_sys)


def geojson_point(lng: float, lat: float) -> dict:
    """The stored form of a WGS-84 location (what a 2dsphere index reads)."""
    return {"type": "Point", "coordinates": [lng, lat]}


def present(lng: float, lat: float) -> dict:
    """A stored WGS-84 location as responses give it: `location` and `location_gcj02`,
    rounded to 6 decimals (0.1 m)."""
    gcj_lng, gcj_lat = wgs84_to_gcj02(lng, lat)
    return {"location": {"lng": round(lng, 6), "lat": round(lat, 6)},
            "location_gcj02": {"lng": round(gcj_lng, 6), "lat": round(gcj_lat, 6)}}


# A decimal number as people write one, in ASCII digits: no "nan", "inf", hex, "1_000", bare "."
# or other scripts' digits (which float() would take).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NEAR_FORM = "must be LNG,LAT in decimal degrees, e.g. 117.0009,36.6758"


def parse_near(value: str) -> tuple[float, float]:
    """The `near=LNG,LAT` query parameter as (lng, lat), in whatever coord_sys the request
    names. Anything else — not two finite decimal numbers, out of range, or a point outside
    China — is an InvalidValue naming `near`."""
    if not isinstance(value, str):
        raise InvalidValue("near", NEAR_FORM)
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(_NUMBER.fullmatch(part) for part in parts):
        raise InvalidValue("near", NEAR_FORM)
    lng, lat = float(parts[0]), float(parts[1])
    if not (math.isfinite(lng) and math.isfinite(lat)):  # 1e999
        raise InvalidValue("near", NEAR_FORM)
    if not (-180 <= lng <= 180 and -90 <= lat <= 90):
        raise InvalidValue("near", "longitude must be from -180 to 180 and latitude from -90 to 90")
    if not in_china(lng, lat):
        raise InvalidValue("near", OUTSIDE_CHINA)
    return lng, lat


def parse_coord_sys(value: str | None) -> CoordSys:
    """The `coord_sys` query parameter (default wgs84); another value is an InvalidValue naming it."""
    if value is None:
        return CoordSys.wgs84
    try:
        return CoordSys(value)
    except ValueError:
        raise InvalidValue("coord_sys", f"must be one of {', '.join(CoordSys)}") from None
