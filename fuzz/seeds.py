#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/: a few small valid inputs per target (see the
layouts in fuzz_targets/). Tokens are correctly signed but expired, so the fuzzer starts deep in
the verifier yet no seed is accepted. Needs the `cryptography` package for RS256 and ES256."""
import base64
import hashlib
import hmac
import json
import pathlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = pathlib.Path(__file__).resolve().parent
KEYS = HERE.parent / "ingress" / "tests" / "keys"
ISSUER, AUDIENCE = "https://issuer.fuzz.test", "coupon-api"  # ingress::fuzzing
CAMPAIGN = "0190a2b4-7c1e-7b3a-9d2e-5f6a7b8c9d0e"
RESERVATION = "0190a2b47c1f7c4d8e9fa0b1c2d3e4f5"
ISSUANCE = CAMPAIGN.replace("-", "") + RESERVATION
EXPIRED = {"exp": 1_700_000_000, "iat": 1_699_999_000}


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def jwt(header, claims, sign):
    signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
    return signing_input + b"." + b64(sign(signing_input))


def hs256(data):
    return hmac.new(b"dev-secret", data, hashlib.sha256).digest()


def private(name):
    return serialization.load_pem_private_key((KEYS / name).read_bytes(), password=None)


def rs256(data):
    return private("rsa-private.pem").sign(data, padding.PKCS1v15(), hashes.SHA256())


def es256(data):
    r, s = decode_dss_signature(private("ec-private.pem").sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def tokens():
    scoped = {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, **EXPIRED}
    dev = jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "user-1", **EXPIRED}, hs256)
    return {
        "hs256": dev,
        "hs256-admin": jwt({"alg": "HS256"}, {**scoped, "role": "admin"}, hs256),
        "rs256": jwt({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, scoped, rs256),
        "es256": jwt({"alg": "ES256", "kid": "ec-1"}, {**scoped, "nbf": 1_699_999_000}, es256),
        "alg-none": jwt({"alg": "none"}, {"sub": "user-1", "exp": 9_999_999_999}, lambda _: b""),
        "bearer-hs256": b"Bearer " + dev,
    }


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def issuance_requested(user, seq, requested_at_ms):
    text = lambda field, value: bytes([field << 3 | 2]) + varint(len(value)) + value.encode()
    number = lambda field, value: bytes([field << 3]) + varint(value)
    return (text(1, ISSUANCE) + text(2, CAMPAIGN) + text(3, user) + number(4, seq)
            + number(5, requested_at_ms))


def record(key, headers, payload):
    field = lambda b: bytes([len(b)]) + b
    out = field(key) if key is not None else b"\xff"
    out += bytes([len(headers)])
    for name, value in headers:
        out += field(name.encode()) + (field(value.encode()) if value is not None else b"\xff")
    return out + payload


def events():
    headers = [
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("content-type", "application/x-protobuf"),
        ("schema", "coupon.v1.IssuanceRequested"),
        ("schema-version", "1"),
        ("ce_specversion", "1.0"),
        ("ce_id", ISSUANCE),
        ("ce_type", "coupon.issuance.requested.v1"),
        ("ce_source", "/coupon-issuance"),
        ("ce_time", "2023-11-14T22:13:20.123Z"),
    ]
    key = f"{CAMPAIGN}:user-1".encode()
    return {
        "valid": record(key, headers, issuance_requested("user-1", 1, 1_700_000_000_123)),
        "bare": record(None, [], issuance_requested("u", 100, 1)),
        "no-value-header": record(key, [("traceparent", None)], issuance_requested("user-1", 2, 1_700_000_000_000)),
        "poison-seq": record(key, headers[:1], issuance_requested("user-1", 0, 1_700_000_000_000)),
    }


def routes():
    return {
        "issue": f"/v1/campaigns/{CAMPAIGN}/issuances",
        "issuance": f"/v1/issuances/{ISSUANCE}",
        "my-coupons": f"/v1/me/coupons?limit=5&cursor=1700000000123456_{CAMPAIGN}",
        "admin-list": "/v1/admin/campaigns?status=live&limit=100",
        "redeem": f"/v1/coupons/{CAMPAIGN}/redeem",
        "public": f"/v1/campaigns?cursor=-1_{CAMPAIGN}",
        # Found by the fuzzer: a cursor whose microseconds overflowed the i128 (now a 400).
        "cursor-overflow": f"/v1/me/coupons?cursor={2**127 - 1}_{CAMPAIGN}",
    }


def main():
    for target, seeds in (("token", tokens()), ("event", events()), ("route", routes())):
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, seed in seeds.items():
            (folder / name).write_bytes(seed if isinstance(seed, bytes) else seed.encode())


if __name__ == "__main__":
    main()
