import pytest

from engine.auth import ApiKey, AuthConfig, Authenticator, generate_key, hash_key
from engine.config import load_serve_config
from engine.errors import InvalidArgument, PermissionDenied, RateLimited, Unauthenticated


def test_keys_scopes_and_rate_with_a_given_clock():
    key = generate_key()
    auth = Authenticator(AuthConfig(keys=(ApiKey("pos", hash_key(key), {"recommend"}, rate_per_second=2, burst=2),)))
    found = auth.authenticate(f"Bearer {key}")
    assert found.name == "pos"
    for header in (None, "", "Bearer", f"Basic {key}", "Bearer wrong"):
        with pytest.raises(Unauthenticated):
            auth.authenticate(header)
    with pytest.raises(PermissionDenied):
        auth.authorize(found, "admin", now=0.0)
    auth.authorize(found, "recommend", now=0.0)
    auth.authorize(found, "recommend", now=0.0)
    with pytest.raises(RateLimited):
        auth.authorize(found, "recommend", now=0.1)
    auth.authorize(found, "recommend", now=0.6)  # one token back after 0.5 s at 2/s


def test_disabled_auth_lets_everyone_in():
    auth = Authenticator(AuthConfig(enabled=False))
    assert auth.authenticate(None) is None
    auth.authorize(None, "admin", now=0.0)


def test_bad_key_config_is_refused():
    with pytest.raises(InvalidArgument, match="scope"):
        ApiKey("x", "0" * 64, {"everything"})
    with pytest.raises(InvalidArgument, match="sha256"):
        ApiKey("x", "not-a-hash", {"recommend"})


def test_toml_config_with_keys(tmp_path):
    key = generate_key()
    path = tmp_path / "recsys.toml"
    path.write_text(f"""
partitions = 16
store_url = "sqlite:///state/recsys.db"
[owners]
min_owners = 3
max_owners = 6
[ranking]
repurchase_policy = "exclude_never"
[ranking.weights]
session = 1.5
[auth]
[[auth.keys]]
name = "storefront"
sha256 = "{hash_key(key)}"
scopes = ["recommend", "events"]
rate_per_second = 50
""")
    config = load_serve_config(path, http_port=8080)
    assert config.partitions == 16 and config.http_port == 8080
    assert config.owners.min_owners == 3 and config.owners.max_owners == 6
    assert config.ranking.repurchase_policy == "exclude_never" and config.ranking.weights.session == 1.5
    assert config.auth.enabled and config.auth.keys[0].scopes == {"recommend", "events"}
    assert config.store_url.startswith("sqlite:////") and config.store_url.endswith("state/recsys.db")
    path.write_text("num_shards = 4\n")  # the key before partitions
    with pytest.raises(InvalidArgument, match="unknown key"):
        load_serve_config(path)


def test_ingress_scaling_policy():
    from engine.config import ServeConfig, ingress_scaling

    assert ingress_scaling(ServeConfig()) == {"num_replicas": 1}
    scaled = ingress_scaling(ServeConfig(ingress_replicas=2, ingress_max_replicas=6, target_ongoing_requests=4))
    assert scaled == {"autoscaling_config": {"min_replicas": 2, "max_replicas": 6, "target_ongoing_requests": 4,
                                             "upscale_delay_s": 30.0, "downscale_delay_s": 600.0}}
    with pytest.raises(InvalidArgument):
        ServeConfig(ingress_max_replicas=0)


def test_toml_cart_weights_override_the_cart_blend_key_by_key(tmp_path):
    from engine.config import BlendWeights, RankingConfig, cart_blend

    CART_BLEND = cart_blend(BlendWeights())
    assert RankingConfig().cart_weights == CART_BLEND and CART_BLEND.session == 1.0
    # built in code, the cart blend follows the given weights the same way
    assert RankingConfig(weights=BlendWeights(promoted=0.0)).cart_weights.promoted == 0.0
    path = tmp_path / "recsys.toml"
    path.write_text("[ranking.cart_weights]\nsession = 2.0\n")
    ranking = load_serve_config(path).ranking
    assert ranking.cart_weights.session == 2.0
    assert ranking.cart_weights.repurchase == CART_BLEND.repurchase != BlendWeights().repurchase
    assert ranking.weights == BlendWeights()
    # weights the evaluation does not choose per context follow [ranking.weights] in both blends
    path.write_text("[ranking.weights]\npromoted = 0.0\nrepurchase = 9.0\n")
    ranking = load_serve_config(path).ranking
    assert ranking.weights.promoted == ranking.cart_weights.promoted == 0.0
    assert ranking.weights.repurchase == 9.0 and ranking.cart_weights.repurchase == CART_BLEND.repurchase
    path.write_text("[ranking.cart_weights]\nsesion = 2.0\n")
    with pytest.raises(InvalidArgument, match="cart_weights: unknown key"):
        load_serve_config(path)
