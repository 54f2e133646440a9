"""The domain: pure Python (and numpy), no Ray, no gRPC, no protobuf."""
