"""The service-station tests' services: on a vhost and databases of their own."""

from platform_testing.plugin import own_vhost_and_services

amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()
