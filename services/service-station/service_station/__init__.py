"""The service-station service: warm stations and service centres for new-employment workers."""
