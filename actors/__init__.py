"""The only layer that calls ray.*: customer shard actors and how they are started."""
