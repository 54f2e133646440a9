"""A free TCP port on loopback, for the servers the tests start (the service's own helper)."""
from gateway.server import free_loopback_port as free_port

__all__ = ["free_port"]
