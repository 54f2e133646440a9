"""Ray Serve deployments: gRPC and HTTP ingress, mapping, validation, error -> status."""
