#!/usr/bin/python3
"""Mint keys and tokens for tests/unit/test_jwt.c with an independent JOSE
implementation (python3-jwt + python3-cryptography, Debian).

usage: mint.py OUTDIR NOW

Writes key files into OUTDIR and OUTDIR/cases.txt, one case per line:

    name|key file|algorithms|audience|issuer|route|expect|token

audience/issuer/route are "-" when not configured; expect is "ok:TARGET"
or "fail:REASON" (the exact reason jwt_verify() gives). Times are relative
to NOW so the C test passes NOW to jwt_verify() and needs no clock.
Everything is generated afresh on each run (nothing secret is committed).
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys

import jwt
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out, NOW = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
LEEWAY = 30


def path(name):
    return os.path.join(out, name)


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path(name)


def pub_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---- keys ----
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
p256 = ec.generate_private_key(ec.SECP256R1())
p256_other = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
secret = secrets.token_urlsafe(48)  # 64 ASCII bytes: enough for HS512

keys = {
    "rsa.pem": pub_pem(rsa_key),
    "p256.pem": pub_pem(p256),
    "p384.pem": pub_pem(p384),
    "ed25519.pem": pub_pem(ed),
    "secret.txt": secret + "\n",  # the trailing newline is not part of it
    "short.txt": "0123456789abcdef\n",
    "rsa.jwk": RSAAlgorithm.to_jwk(rsa_key.public_key()),
    "p256.jwk": ECAlgorithm.to_jwk(p256.public_key()),
    "p384.jwk": ECAlgorithm.to_jwk(p384.public_key()),
    "ed25519.jwk": OKPAlgorithm.to_jwk(ed.public_key()),
    "secret.jwk": HMACAlgorithm.to_jwk(secret.encode()),
    "rsa-private.pem": rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()),
}
for name, data in keys.items():
    write(name, data)

signing = {"HS256": secret, "HS384": secret, "HS512": secret, "RS256": rsa_key,
           "PS256": rsa_key, "ES256": p256, "ES384": p384, "EdDSA": ed}
pem_for = {"HS256": "secret.txt", "HS384": "secret.txt", "HS512": "secret.txt",
           "RS256": "rsa.pem", "PS256": "rsa.pem", "ES256": "p256.pem", "ES384": "p384.pem",
           "EdDSA": "ed25519.pem"}
jwk_for = {"HS256": "secret.jwk", "RS256": "rsa.jwk", "PS256": "rsa.jwk", "ES256": "p256.jwk",
           "ES384": "p384.jwk", "EdDSA": "ed25519.jwk"}

cases = []


def case(name, key, algs, expect, token, aud="-", iss="-", route="-"):
    assert "|" not in token and "\n" not in token
    cases.append("|".join([name, path(key), algs, aud, iss, route, expect, token]))


def claims(**extra):
    c = {"host": "10.0.0.7", "port": 5901, "iat": NOW, "exp": NOW + 300}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def mint(alg, payload, key=None, headers=None):
    return jwt.encode(payload, signing[alg] if key is None else key, algorithm=alg,
                      headers=headers)


def hs256_raw(header_bytes, payload_bytes, key):
    """A token assembled by hand (for what pyjwt refuses to make)."""
    signing_input = b64(header_bytes) + "." + b64(payload_bytes)
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


# ---- every algorithm, PEM (or raw secret) and JWK keys ----
for alg in signing:
    case(f"{alg}-ok", pem_for[alg], alg, "ok:10.0.0.7:5901", mint(alg, claims()))
    if alg in jwk_for:
        case(f"{alg}-jwk-ok", jwk_for[alg], alg, "ok:10.0.0.7:5901", mint(alg, claims()))

# ---- time claims (leeway 30 s) ----
E = "ES256"
case("exp-within-leeway", "p256.pem", E, "ok:10.0.0.7:5901", mint(E, claims(exp=NOW - LEEWAY + 1)))
case("exp-at-leeway", "p256.pem", E, "fail:expired", mint(E, claims(exp=NOW - LEEWAY)))
case("exp-beyond-leeway", "p256.pem", E, "fail:expired", mint(E, claims(exp=NOW - 3600)))
case("nbf-within-leeway", "p256.pem", E, "ok:10.0.0.7:5901", mint(E, claims(nbf=NOW + LEEWAY)))
case("nbf-beyond-leeway", "p256.pem", E, "fail:not valid yet (nbf)",
     mint(E, claims(nbf=NOW + LEEWAY + 1)))
case("no-exp", "p256.pem", E, "ok:10.0.0.7:5901", mint(E, claims(exp=None)))
case("exp-string", "secret.txt", "HS256", "fail:exp is not a number",
     hs256_raw(b'{"alg":"HS256"}', json.dumps(claims(exp=str(NOW + 60))).encode(),
               secret.encode()))

# ---- aud, iss, route ----
case("aud-ok", "p256.pem", E, "ok:10.0.0.7:5901", mint(E, claims(aud="wsgate")), aud="wsgate")
case("aud-array-ok", "p256.pem", E, "ok:10.0.0.7:5901",
     mint(E, claims(aud=["other", "wsgate"])), aud="wsgate")
case("aud-wrong", "p256.pem", E, "fail:audience mismatch", mint(E, claims(aud="other")),
     aud="wsgate")
case("aud-array-wrong", "p256.pem", E, "fail:audience mismatch",
     mint(E, claims(aud=["a", "b"])), aud="wsgate")
case("aud-missing", "p256.pem", E, "fail:audience mismatch", mint(E, claims()), aud="wsgate")
case("iss-ok", "p256.pem", E, "ok:10.0.0.7:5901",
     mint(E, claims(iss="https://cp.example")), iss="https://cp.example")
case("iss-wrong", "p256.pem", E, "fail:issuer mismatch",
     mint(E, claims(iss="https://evil.example")), iss="https://cp.example")
case("route-ok", "p256.pem", E, "ok:10.0.0.7:5901", mint(E, claims(route="vnc")), route="vnc")
case("route-wrong", "p256.pem", E, "fail:route mismatch", mint(E, claims(route="ssh")),
     route="vnc")
case("route-not-a-string", "p256.pem", E, "fail:route mismatch", mint(E, claims(route=1)),
     route="vnc")

# ---- host and port ----
case("port-string", "p256.pem", E, "ok:db.internal:22",
     mint(E, claims(host="db.internal", port="22")))
case("host-ipv6", "p256.pem", E, "ok:[2001:db8::5]:5900",
     mint(E, claims(host="2001:db8::5", port=5900)))
case("port-bad-string", "p256.pem", E, "fail:no valid host and port claims",
     mint(E, claims(port="59x1")))
case("port-out-of-range", "p256.pem", E, "fail:no valid host and port claims",
     mint(E, claims(port=65536)))
case("port-missing", "p256.pem", E, "fail:no valid host and port claims",
     mint(E, claims(port=None)))
case("host-missing", "p256.pem", E, "fail:no valid host and port claims",
     mint(E, claims(host=None)))
case("host-with-slash", "p256.pem", E, "fail:invalid host claim",
     mint(E, claims(host="evil/x")))

# ---- refused algorithms and forgeries ----
case("alg-none", "secret.txt", "HS256", "fail:alg none refused",
     jwt.encode(claims(), None, algorithm="none"))
case("confusion-hs256-with-rsa-pem", "rsa.pem", "RS256", "fail:algorithm not allowed",
     hs256_raw(b'{"alg":"HS256","typ":"JWT"}', json.dumps(claims()).encode(), keys["rsa.pem"]))
case("ps256-when-rs256-allowed", "rsa.pem", "RS256", "fail:algorithm not allowed",
     mint("PS256", claims()))
case("es256-when-es384-allowed", "p384.pem", "ES384", "fail:algorithm not allowed",
     mint("ES256", claims()))
good = mint(E, claims())
h, p, s = good.split(".")
case("tampered-payload", "p256.pem", E, "fail:bad signature",
     h + "." + b64(json.dumps(claims(port=22)).encode()) + "." + s)
case("wrong-key", "p256.pem", E, "fail:bad signature", mint(E, claims(), key=p256_other))
case("wrong-secret", "secret.txt", "HS256", "fail:bad signature",
     mint("HS256", claims(), key=secret + "x"))
case("truncated-signature", "p256.pem", E, "fail:bad signature", h + "." + p + "." + s[:-4])
case("bad-base64-header", "p256.pem", E, "fail:malformed header", "e*J." + p + "." + s)
case("bad-base64-signature", "p256.pem", E, "fail:bad signature", h + "." + p + "." + s[:-1] + "*")
case("header-not-json", "secret.txt", "HS256", "fail:malformed header",
     hs256_raw(b"alg HS256", json.dumps(claims()).encode(), secret.encode()))
case("payload-not-json", "secret.txt", "HS256", "fail:malformed payload",
     hs256_raw(b'{"alg":"HS256"}', b'{"host": "x", "port": ', secret.encode()))
case("payload-duplicate-key", "secret.txt", "HS256", "fail:malformed payload",
     hs256_raw(b'{"alg":"HS256"}', b'{"host":"10.0.0.7","port":5901,"host":"evil"}',
               secret.encode()))
case("payload-not-object", "secret.txt", "HS256", "fail:payload is not a JSON object",
     hs256_raw(b'{"alg":"HS256"}', b'[1,2]', secret.encode()))
case("crit-header", "p256.pem", E, "fail:crit header not supported",
     mint(E, claims(), headers={"crit": ["exp"]}))
case("four-parts", "p256.pem", E, "fail:not a compact JWS (three parts)", good + ".x")

with open(path("cases.txt"), "w") as f:
    f.write("\n".join(cases) + "\n")
