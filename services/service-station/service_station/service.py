"""The nameko service: entrypoints only, on the chassis (service_kit.chassis)."""

from service_kit.chassis.base import ChassisService


class ServiceStationService(ChassisService):
    name = "service-station"
