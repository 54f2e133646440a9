"""`[consume]` in the config file: checked at load, with the key named."""
import pytest

from engine.config import ConsumeConfig, load_serve_config
from engine.errors import InvalidArgument


def test_consume_section_is_read_and_checked(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[consume]\nurl = "amqp://u:p@broker:5672/%2F"\nqueue = "pos.events"\nprefetch = 50\nbatch_max = 50\n')
    config = load_serve_config(toml).consume
    assert (config.url, config.queue, config.prefetch, config.batch_max) == ("amqp://u:p@broker:5672/%2F", "pos.events", 50, 50)
    assert load_serve_config().consume == ConsumeConfig()
    for body, message in (('url = "http://x"', "consume.url"), ("prefetch = 10\nbatch_max = 20", "batch_max <= prefetch"),
                          ('queue = ""', "consume.queue"), ("bogus = 1", "unknown key")):
        toml.write_text("[consume]\n" + body + "\n")
        with pytest.raises(InvalidArgument, match=message):
            load_serve_config(toml)
