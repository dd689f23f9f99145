"""Tests for :mod:`flowscope.parsers.quic`.

Independent references only: the sample packets of RFC 9001 Appendix A
(QUIC v1) and RFC 9369 Appendix A (QUIC v2), the tshark ground truth of the
public corpus, and handmade packets built by small test-only packet
protectors that are themselves checked byte for byte against the RFC samples
(the Handshake-packet one derives its keys with cryptography's HKDF, not the
parser's).  Certificates for the key-log tests are made here with known names.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import random
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import dpkt
import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import NameOID
from flowscope_core import (
    DatagramParserFactory,
    Detection,
    Direction,
    Endpoint,
    FlowInfo,
    MissingExtraError,
    Orientation,
    SessionEvent,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope._capture import open_capture
from flowscope._keylog import KeyLog
from flowscope.parsers import quic
from flowscope.parsers.quic import (
    QuicConfig,
    QuicError,
    QuicHandshake,
    QuicParser,
    QuicParserFactory,
    initial_keys,
    open_initial_packet,
    traffic_keys,
)
from conftest import corpus_pcaps, load_truth

# --------------------------------------------------------------------------- RFC samples

DCID = bytes.fromhex("8394c8f03e515708")
V1 = 0x00000001
V2 = 0x6B3343CF

# RFC 9001 A.2 / RFC 9369 A.2: the client's CRYPTO frame (the same in both).
RFC_CLIENT_CRYPTO = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075"
    "300901100f088394c8f03e51570806048000ffff"
)
RFC_CLIENT_PAYLOAD = RFC_CLIENT_CRYPTO + bytes(1162 - len(RFC_CLIENT_CRYPTO))
RFC_CLIENT_HELLO = RFC_CLIENT_CRYPTO[4:]
"""The ClientHello handshake message (type 1, 237-byte body)."""

# RFC 9001 A.3 / RFC 9369 A.3: the server's ACK + CRYPTO(ServerHello).
RFC_SERVER_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304"
)
RFC_SERVER_HELLO = RFC_SERVER_PAYLOAD[9:]
SERVER_CID = bytes.fromhex("f067a5502a4262b5")

RFC9001_CLIENT_PACKET = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)
RFC9001_SERVER_PACKET = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee"
)
RFC9369_CLIENT_PACKET = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc"
)
RFC9369_SERVER_PACKET = bytes.fromhex(
    "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698"
    "baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17"
    "f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2"
    "c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8"
    "4bed8521e2e140"
)

# The JA3 string of the RFC ClientHello, read off the RFC bytes by hand:
# legacy version 0x0303 = 771; ciphers 1301 1302; extensions server_name(0),
# renegotiation_info(65281), supported_groups(10), ALPN(16), status_request(5),
# key_share(51), supported_versions(43), signature_algorithms(13),
# psk_key_exchange_modes(45), record_size_limit(28), quic_transport_parameters(57);
# groups x25519, secp256r1, secp384r1; no ec_point_formats.
RFC_JA3_STRING = "771,4865-4866,0-65281-10-16-5-51-43-13-45-28-57,29-23-24,"
# The ServerHello: 0x0303, TLS_AES_128_GCM_SHA256, extensions key_share(51), supported_versions(43).
RFC_JA3S_STRING = "771,4865,51-43"

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
"""RFC 8446 §4.1.3: the ServerHello.random that marks a HelloRetryRequest."""


# --------------------------------------------------------------------------- test-only packet builder


def varint(value: int) -> bytes:
    """QUIC variable-length integer, shortest form (RFC 9000 §16)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (0x4000 | value).to_bytes(2, "big")
    if value < 0x40000000:
        return (0x80000000 | value).to_bytes(4, "big")
    return (0xC000000000000000 | value).to_bytes(8, "big")


def protect(
    payload: bytes,
    *,
    version: int = V1,
    key_dcid: bytes = DCID,
    dcid: Optional[bytes] = None,
    scid: bytes = b"",
    from_server: bool = False,
    pn: int = 0,
    pn_len: int = 4,
) -> bytes:
    """Build a protected Initial packet the way RFC 9001 §5 says a sender does."""
    keys = initial_keys(version, key_dcid)[1 if from_server else 0]
    type_bits = 1 if version == V2 else 0
    first = 0xC0 | (type_bits << 4) | (pn_len - 1)
    dcid = key_dcid if dcid is None else dcid
    length = pn_len + len(payload) + 16
    header = (
        bytes((first,))
        + version.to_bytes(4, "big")
        + bytes((len(dcid),))
        + dcid
        + bytes((len(scid),))
        + scid
        + b"\x00"  # no token
        + (0x4000 | length).to_bytes(2, "big")
        + (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    )
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(keys.key).encrypt(nonce, payload, header)
    sample = sealed[4 - pn_len : 20 - pn_len]
    mask = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor().update(sample)
    pn_off = len(header) - pn_len
    protected = bytearray(header)
    protected[0] ^= mask[0] & 0x0F
    for k in range(pn_len):
        protected[pn_off + k] ^= mask[1 + k]
    return bytes(protected) + sealed


def crypto(offset: int, data: bytes) -> bytes:
    """A CRYPTO frame."""
    return b"\x06" + varint(offset) + varint(len(data)) + data


def server_hello(random_bytes: bytes = bytes(range(32)), cipher: int = 0x1301) -> bytes:
    """A TLS 1.3 ServerHello handshake message (key_share x25519 placeholder, supported_versions 1.3)."""
    exts = b"\x00\x2b\x00\x02\x03\x04" + b"\x00\x33\x00\x02\x00\x1d"
    body = b"\x03\x03" + random_bytes + b"\x00" + cipher.to_bytes(2, "big") + b"\x00"
    body += len(exts).to_bytes(2, "big") + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def padded(frames: bytes, size: int = 1162) -> bytes:
    return frames + bytes(max(0, size - len(frames)))


def run(parser: QuicParser, datagrams: Sequence[Tuple[Direction, bytes]]) -> List[SessionEvent]:
    """Feed datagrams (1 ms apart) then close; every event in order."""
    events: List[SessionEvent] = []
    ts = 1_000_000_000
    for direction, payload in datagrams:
        ts += 1_000_000
        events.extend(parser.datagram(direction, payload, ts))
    events.extend(parser.close(ts + 1))
    return events


def handshakes(events: Sequence[SessionEvent]) -> List[QuicHandshake]:
    return [e for e in events if isinstance(e, QuicHandshake)]


def errors(events: Sequence[SessionEvent]) -> List[QuicError]:
    return [e for e in events if isinstance(e, QuicError)]


ORIG, RESP = Direction.ORIG, Direction.RESP


# --------------------------------------------------------------------------- RFC 9001 / 9369 vectors


def test_rfc9001_initial_keys() -> None:
    client, server = initial_keys(V1, DCID)
    assert client.secret.hex() == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert client.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert client.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert client.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"
    assert server.secret.hex() == "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"
    assert server.key.hex() == "cf3a5331653c364c88f0f379b6067e37"
    assert server.iv.hex() == "0ac1493ca1905853b0bba03e"
    assert server.hp.hex() == "c206b8d9b9f0f37644430b490eeaa314"


def test_rfc9369_initial_keys() -> None:
    client, server = initial_keys(V2, DCID)
    assert client.secret.hex() == "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"
    assert client.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert client.iv.hex() == "91f73e2351d8fa91660e909f"
    assert client.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"
    assert server.secret.hex() == "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1"
    assert server.key.hex() == "82db637861d55e1d011f19ea71d5d2a7"
    assert server.iv.hex() == "dd13c276499c0249d3310652"
    assert server.hp.hex() == "edf6d05c83121201b436e16877593c3a"


def test_unknown_version_has_no_keys() -> None:
    with pytest.raises(ValueError):
        initial_keys(0x51303436, DCID)  # gQUIC Q046


@pytest.mark.parametrize(
    ("packet", "from_server", "number", "payload"),
    [
        (RFC9001_CLIENT_PACKET, False, 2, RFC_CLIENT_PAYLOAD),
        (RFC9001_SERVER_PACKET, True, 1, RFC_SERVER_PAYLOAD),
        (RFC9369_CLIENT_PACKET, False, 2, RFC_CLIENT_PAYLOAD),
        (RFC9369_SERVER_PACKET, True, 1, RFC_SERVER_PAYLOAD),
    ],
    ids=["v1-client", "v1-server", "v2-client", "v2-server"],
)
def test_rfc_sample_packets_decrypt(packet: bytes, from_server: bool, number: int, payload: bytes) -> None:
    assert open_initial_packet(packet, client_dcid=DCID, from_server=from_server) == (number, payload)


def test_open_initial_packet_rejects_wrong_keys_and_garbage() -> None:
    with pytest.raises(ValueError):
        open_initial_packet(RFC9001_CLIENT_PACKET, client_dcid=bytes(8), from_server=False)
    with pytest.raises(ValueError):
        open_initial_packet(RFC9001_CLIENT_PACKET, client_dcid=DCID, from_server=True)
    with pytest.raises(ValueError):
        open_initial_packet(b"\xc0\x00", client_dcid=DCID, from_server=False)


def test_test_protector_reproduces_the_rfc_packets() -> None:
    """The test-only builder below is trustworthy: it yields the RFC bytes exactly."""
    assert protect(RFC_CLIENT_PAYLOAD, pn=2) == RFC9001_CLIENT_PACKET
    assert (
        protect(RFC_SERVER_PAYLOAD, dcid=b"", scid=SERVER_CID, from_server=True, pn=1, pn_len=2)
        == RFC9001_SERVER_PACKET
    )
    assert protect(RFC_CLIENT_PAYLOAD, version=V2, pn=2) == RFC9369_CLIENT_PACKET
    assert (
        protect(RFC_SERVER_PAYLOAD, version=V2, dcid=b"", scid=SERVER_CID, from_server=True, pn=1, pn_len=2)
        == RFC9369_SERVER_PACKET
    )


@pytest.mark.parametrize(
    ("client", "server", "label"),
    [(RFC9001_CLIENT_PACKET, RFC9001_SERVER_PACKET, "1"), (RFC9369_CLIENT_PACKET, RFC9369_SERVER_PACKET, "2")],
    ids=["v1", "v2"],
)
def test_rfc_handshake_record(client: bytes, server: bytes, label: str) -> None:
    events = run(QuicParser(), [(ORIG, client), (RESP, server)])
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000  # emitted with the ServerHello's datagram, not at close
    assert record.quic_version == label
    assert record.server_name == "example.com"
    assert record.alpn_offered == ("alpn",)
    assert record.client_version == "0x0303"
    assert record.client_supported_versions == ("0x0304",)
    assert record.version == "TLSv1.3"
    assert record.ja3_string == RFC_JA3_STRING
    assert record.ja3 == hashlib.md5(RFC_JA3_STRING.encode()).hexdigest()
    assert record.ja3s_string == RFC_JA3S_STRING
    assert record.ja3s == hashlib.md5(RFC_JA3S_STRING.encode()).hexdigest()
    assert record.ja4 is not None and record.ja4.startswith("q13d0211an_")
    assert record.cipher is not None and ("1301" in record.cipher or "AES_128_GCM_SHA256" in record.cipher)
    assert record.alpn_selected is None
    assert (record.cert_subject_cn, record.cert_issuer_cn, record.cert_san_dns) == (None, None, ())
    assert record.hello_retry_request is False
    assert record.event_type == "quic" and record.transport == "quic"
    assert record.server_version_legacy == "0x0303"


def test_lone_client_hello_is_reported_at_close() -> None:
    parser = QuicParser()
    assert parser.datagram(ORIG, RFC9001_CLIENT_PACKET, 5) == []
    [record] = handshakes(parser.close(9))
    assert record.ts == 5
    assert (record.server_name, record.version, record.ja3s, record.cipher) == ("example.com", None, None, None)
    assert parser.close(10) == []


# --------------------------------------------------------------------------- datagram walking and reassembly


def test_client_hello_split_out_of_order_across_packets() -> None:
    """Chrome-style: CRYPTO pieces shuffled, interleaved with PING/PADDING, over two datagrams."""
    ch = RFC_CLIENT_HELLO
    pieces = [(0, ch[:50]), (50, ch[50:120]), (120, ch[120:200]), (200, ch[200:])]
    first = padded(crypto(*pieces[3]) + b"\x01" + bytes(7) + crypto(*pieces[1]))
    second = padded(b"\x01" + crypto(*pieces[2]) + bytes(3) + crypto(*pieces[0]) + crypto(*pieces[1]))
    events = run(QuicParser(), [(ORIG, protect(first, pn=0)), (ORIG, protect(second, pn=1))])
    [record] = handshakes(events)
    assert record.server_name == "example.com"
    assert record.ja3_string == RFC_JA3_STRING


def test_retransmissions_and_overlaps_give_one_record() -> None:
    ch = RFC_CLIENT_HELLO
    packets = [
        protect(padded(crypto(0, ch[:100])), pn=0),
        protect(padded(crypto(0, ch[:100])), pn=1),  # retransmission
        protect(padded(crypto(60, ch[60:])), pn=2),  # overlaps the first piece
        protect(padded(crypto(0, ch)), pn=3),  # the whole hello again
    ]
    events = run(QuicParser(), [(ORIG, p) for p in packets])
    assert errors(events) == []
    assert [r.server_name for r in handshakes(events)] == ["example.com"]


def test_coalesced_packets_and_short_header_are_walked() -> None:
    """Server datagram: Initial + a Handshake packet (opaque) + a 1-RTT packet."""
    server_initial = protect(
        b"\x02\x00\x00\x00\x00" + crypto(0, RFC_SERVER_HELLO), dcid=b"\x01\x02", scid=SERVER_CID, from_server=True
    )
    handshake_packet = b"\xe0" + V1.to_bytes(4, "big") + b"\x02\x01\x02\x08" + SERVER_CID + varint(40) + bytes(40)
    one_rtt = b"\x40\x01\x02" + bytes(30)
    datagram = server_initial + handshake_packet + one_rtt
    events = run(QuicParser(), [(ORIG, RFC9001_CLIENT_PACKET), (RESP, datagram), (RESP, one_rtt)])
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.version == "TLSv1.3" and record.ja3s_string == RFC_JA3S_STRING


def test_later_client_initials_use_the_original_keys() -> None:
    """After the server's Initial the client addresses the server's CID, with the same keys."""
    ack_only = padded(b"\x02\x01\x00\x00\x00")
    later = protect(ack_only, dcid=SERVER_CID, pn=3)
    datagrams = [(ORIG, RFC9001_CLIENT_PACKET), (ORIG, later), (RESP, RFC9001_SERVER_PACKET), (ORIG, later)]
    events = run(QuicParser(), datagrams)
    assert errors(events) == []
    assert len(handshakes(events)) == 1


def test_hello_retry_request_splits_records() -> None:
    ch = RFC_CLIENT_HELLO
    hrr = server_hello(HRR_RANDOM)
    sh = server_hello(bytes(range(32)), cipher=0x1302)
    datagrams = [
        (ORIG, protect(padded(crypto(0, ch)), pn=0)),
        (RESP, protect(crypto(0, hrr), dcid=b"", scid=SERVER_CID, from_server=True, pn=0)),
        (ORIG, protect(padded(crypto(len(ch), ch)), dcid=SERVER_CID, pn=1)),
        (RESP, protect(crypto(len(hrr), sh), dcid=b"", scid=SERVER_CID, from_server=True, pn=1)),
    ]
    events = run(QuicParser(), datagrams)
    assert errors(events) == []
    first, second = handshakes(events)
    assert first.hello_retry_request is True and second.hello_retry_request is False
    assert first.server_name == second.server_name == "example.com"
    assert second.cipher is not None and ("1302" in second.cipher or "AES_256_GCM_SHA384" in second.cipher)


def test_new_dcid_on_the_same_flow_starts_a_new_connection() -> None:
    """A client Initial under fresh keys (after Retry, or port reuse) closes the previous attempt."""
    other = bytes.fromhex("0011223344556677")
    events = run(
        QuicParser(),
        [(ORIG, RFC9001_CLIENT_PACKET), (ORIG, protect(RFC_CLIENT_PAYLOAD, key_dcid=other, pn=0))],
    )
    assert errors(events) == []
    assert [r.server_name for r in handshakes(events)] == ["example.com", "example.com"]


def test_compatible_version_negotiation_server_answers_in_v2() -> None:
    """RFC 9368: a v1 client Initial answered by a v2 server Initial keyed from the same DCID."""
    events = run(QuicParser(), [(ORIG, RFC9001_CLIENT_PACKET), (RESP, RFC9369_SERVER_PACKET)])
    [record] = handshakes(events)
    assert record.quic_version == "2" and record.version == "TLSv1.3"


def test_draft_versions_decrypt() -> None:
    draft29 = 0xFF00001D
    packet = protect(RFC_CLIENT_PAYLOAD, version=draft29)
    assert QuicParserFactory().detect(ORIG, packet, FLOW) is Detection.MATCH
    [record] = handshakes(run(QuicParser(), [(ORIG, packet)]))
    assert record.quic_version == "0xff00001d" and record.server_name == "example.com"


# --------------------------------------------------------------------------- malformed traffic


def test_undecryptable_initial_reports_once_and_ignores_the_flow() -> None:
    broken = bytearray(RFC9001_CLIENT_PACKET)
    broken[600] ^= 0x55
    events = run(QuicParser(), [(ORIG, bytes(broken)), (ORIG, RFC9001_CLIENT_PACKET), (RESP, RFC9001_SERVER_PACKET)])
    assert [e.reason for e in errors(events)] == ["undecryptable"]
    assert handshakes(events) == []
    assert errors(events)[0].event_type == "quic_error"


def test_server_initial_first_is_undecryptable() -> None:
    events = run(QuicParser(), [(RESP, RFC9001_SERVER_PACKET)])
    assert [e.reason for e in errors(events)] == ["undecryptable"]


def test_forbidden_frame_is_malformed_but_keeps_a_parsed_hello() -> None:
    stream_frame = b"\x08\x00\x01x"  # STREAM is not allowed in Initial packets
    events = run(
        QuicParser(),
        [(ORIG, RFC9001_CLIENT_PACKET), (ORIG, protect(padded(stream_frame), dcid=SERVER_CID, pn=5))],
    )
    assert [e.reason for e in errors(events)] == ["malformed_frame"]
    assert [r.server_name for r in handshakes(events)] == ["example.com"]


@pytest.mark.parametrize(
    "frames",
    [
        b"\x06\x00\x44",  # CRYPTO length varint cut short
        b"\x06\x00\x20abc",  # CRYPTO data runs past the end
        b"\x02\x00\x00\x30\x00",  # ACK with more ranges than bytes
        b"\x1c\x00\x00\x30ab",  # CONNECTION_CLOSE reason runs past the end
    ],
)
def test_truncated_frames_are_malformed(frames: bytes) -> None:
    events = run(QuicParser(), [(ORIG, protect(frames, pn=0))])
    assert [e.reason for e in errors(events)] == ["malformed_frame"]


def test_crypto_bounds() -> None:
    config = QuicConfig(max_crypto_bytes=1000, max_crypto_fragments=2)
    far = protect(padded(crypto(5000, b"x")), pn=0)
    assert [e.reason for e in errors(run(QuicParser(config), [(ORIG, far)]))] == ["crypto_limit"]
    pieces = protect(padded(crypto(300, b"a") + crypto(400, b"b") + crypto(500, b"c")), pn=0)
    assert [e.reason for e in errors(run(QuicParser(config), [(ORIG, pieces)]))] == ["crypto_limit"]
    huge_message = protect(padded(crypto(0, b"\x01\x00\x10\x00")), pn=0)  # declares 4 KiB
    assert [e.reason for e in errors(run(QuicParser(config), [(ORIG, huge_message)]))] == ["crypto_limit"]


def test_initial_packet_limit() -> None:
    config = QuicConfig(max_initial_packets=3)
    ping = protect(padded(b"\x01"), pn=0)
    events = run(QuicParser(config), [(ORIG, ping)] * 5)
    assert [e.reason for e in errors(events)] == ["packet_limit"]


def test_connection_limit() -> None:
    config = QuicConfig(max_handshakes=2)
    attempts = [protect(RFC_CLIENT_PAYLOAD, key_dcid=bytes((k,)) * 8) for k in range(4)]
    events = run(QuicParser(config), [(ORIG, p) for p in attempts])
    assert [e.reason for e in errors(events)] == ["packet_limit"]
    assert len(handshakes(events)) == 2


def test_malformed_client_hello() -> None:
    events = run(QuicParser(), [(ORIG, protect(padded(crypto(0, b"\x01\x00\x00\x02\x03\x03")), pn=0))])
    assert [e.reason for e in errors(events)] == ["malformed_hello"]


def test_junk_after_a_good_packet_is_ignored() -> None:
    events = run(QuicParser(), [(ORIG, RFC9001_CLIENT_PACKET + b"\xc0\x00\x00\x00\x01\x30")])
    assert errors(events) == []
    assert len(handshakes(events)) == 1


def test_non_initial_datagrams_are_ignored() -> None:
    events = run(
        QuicParser(),
        [
            (ORIG, b""),
            (ORIG, b"\x40" + bytes(40)),  # short header
            (ORIG, b"\xc0\x00\x00\x00\x00\x08" + bytes(30)),  # version negotiation
            (ORIG, b"\xc0Q046" + bytes(30)),  # gQUIC
            (RESP, b"\xf0" + V1.to_bytes(4, "big") + b"\x00\x08" + bytes(8) + b"token"),  # Retry
        ],
    )
    assert events == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=1500)), max_size=6))
def test_arbitrary_bytes_never_raise(datagrams: List[Tuple[bool, bytes]]) -> None:
    parser = QuicParser()
    for k, (server, payload) in enumerate(datagrams):
        for event in parser.datagram(RESP if server else ORIG, payload, k):
            assert isinstance(event, (QuicHandshake, QuicError))
    parser.close(99)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_real_packets_never_raise(data: st.DataObject) -> None:
    packet = bytearray(data.draw(st.sampled_from([RFC9001_CLIENT_PACKET, RFC9369_CLIENT_PACKET])))
    for _ in range(data.draw(st.integers(1, 4))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(packet)))
    parser = QuicParser()
    events = list(parser.datagram(ORIG, bytes(packet[:cut]), 1)) + list(parser.close(2))
    assert len(errors(events)) <= 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(crypto, st.integers(0, 20000), st.binary(max_size=300)),
            st.sampled_from([b"\x00" * 5, b"\x01", b"\x02\x05\x00\x01\x00\x00\x01", b"\x1c\x0a\x06\x02hi"]),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_random_frames_behind_valid_encryption_never_raise(frames: List[bytes], from_server: bool) -> None:
    """The frame and CRYPTO parsers sit behind AEAD, so fuzz them with properly protected packets."""
    payload = b"".join(frames) + bytes(20)
    parser = QuicParser()
    events = list(parser.datagram(ORIG, RFC9001_CLIENT_PACKET, 1)) if from_server else []
    packet = protect(payload, dcid=b"" if from_server else DCID, from_server=from_server, pn=1)
    events += list(parser.datagram(RESP if from_server else ORIG, packet, 2)) + list(parser.close(3))
    assert len(errors(events)) <= 1
    assert all(isinstance(e, (QuicHandshake, QuicError)) for e in events)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_split_and_order_of_crypto_frames_reassembles(data: st.DataObject) -> None:
    ch = RFC_CLIENT_HELLO
    cuts = sorted(data.draw(st.sets(st.integers(1, len(ch) - 1), max_size=12)))
    bounds = [0, *cuts, len(ch)]
    frames = [crypto(a, ch[a:b]) for a, b in zip(bounds, bounds[1:])]
    order = data.draw(st.permutations(frames))
    n_packets = data.draw(st.integers(1, 3))
    packets = [protect(padded(b"".join(order[k::n_packets])), pn=k) for k in range(n_packets)]
    events = run(QuicParser(), [(ORIG, p) for p in packets])
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ja3_string == RFC_JA3_STRING


# --------------------------------------------------------------------------- factory


FLOW = FlowInfo(
    flow_id="f1",
    proto=17,
    orig=Endpoint(addr="10.0.0.1", port=50000),
    resp=Endpoint(addr="10.0.0.2", port=443),
    orientation=Orientation.FIRST_PACKET,
    community_id="1:x",
    vlan=(),
    tunnel=(),
)


def test_factory() -> None:
    made = quic.factory()
    as_protocol: DatagramParserFactory = made
    assert as_protocol.name == "quic"
    assert made.ports == frozenset({443, 80, 8443, 4433})
    assert isinstance(made.create_datagram(FLOW), QuicParser)
    for packet in (RFC9001_CLIENT_PACKET, RFC9369_CLIENT_PACKET, RFC9001_SERVER_PACKET):
        assert made.detect(ORIG, packet, FLOW) is Detection.MATCH
    for junk in (
        b"",
        b"\xc0\x00\x00",
        b"\x40" + bytes(1200),  # short header
        b"\xc0Q046" + bytes(1200),  # gQUIC
        b"\x80" + V1.to_bytes(4, "big") + bytes(1200),  # fixed bit clear
        b"\xc0" + V1.to_bytes(4, "big") + b"\x30" + bytes(1200),  # DCID longer than 20
        b"GET / HTTP/1.1\r\n\r\n",
    ):
        assert made.detect(ORIG, junk, FLOW) is Detection.NO_MATCH
    for other_packet in (
        b"\xe0" + V1.to_bytes(4, "big") + bytes(1200),  # v1 Handshake packet
        b"\xc0" + V2.to_bytes(4, "big") + bytes(1200),  # v2 type bits 00 = Retry
    ):
        assert made.detect(RESP, other_packet, FLOW) is Detection.NEED_MORE


def test_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quic, "_HAVE_CRYPTOGRAPHY", False)
    with pytest.raises(MissingExtraError) as info:
        quic.factory().create_datagram(FLOW)
    assert "tls" in info.value.install


# --------------------------------------------------------------------------- the corpus

Conv = FrozenSet[Tuple[str, int]]


def _udp_datagrams(pcap: Path) -> Dict[Conv, List[Tuple[Tuple[str, int], bytes]]]:
    """Every UDP payload of a capture grouped by conversation, in file order (test-only decoder)."""
    flows: Dict[Conv, List[Tuple[Tuple[str, int], bytes]]] = defaultdict(list)
    with pcap.open("rb") as fh:
        reader: Any = dpkt.pcap.UniversalReader(fh)
        link = reader.datalink()
        for _ts, frame in reader:
            if link == dpkt.pcap.DLT_LINUX_SLL:
                ip = dpkt.sll.SLL(frame).data
            elif link == dpkt.pcap.DLT_NULL:
                ip = dpkt.loopback.Loopback(frame).data
            elif link in (dpkt.pcap.DLT_RAW, 101):
                ip = dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
            else:
                ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
            src = (socket.inet_ntop(family, ip.src), int(ip.data.sport))
            dst = (socket.inet_ntop(family, ip.dst), int(ip.data.dport))
            flows[frozenset((src, dst))].append((src, bytes(ip.data.data)))
    return flows


def _run_flow(
    datagrams: List[Tuple[Tuple[str, int], bytes]], keylog: Optional[KeyLog] = None
) -> Optional[List[SessionEvent]]:
    """Detect on the first datagram, then parse the flow as the tracker would; None if not QUIC."""
    orig = datagrams[0][0]
    if QuicParserFactory().detect(ORIG, datagrams[0][1], FLOW) is not Detection.MATCH:
        return None
    made = quic.factory()
    made.keylog = keylog
    parser = made.create_datagram(FLOW)
    events: List[SessionEvent] = []
    for k, (src, payload) in enumerate(datagrams):
        events.extend(parser.datagram(ORIG if src == orig else RESP, payload, k))
    events.extend(parser.close(len(datagrams)))
    return events


def _quic_captures() -> List[Path]:
    return [p for p in corpus_pcaps() if any(t.get("transport") == "quic" for t in load_truth(p).get("tls", []))]


def _conv(truth_record: Dict[str, Any]) -> Conv:
    """The conversation of a truth ``tls`` record."""
    client, server = truth_record["client"], truth_record["server"]
    return frozenset(((client["ip"], int(client["port"])), (server["ip"], int(server["port"]))))


TLS_NAMES = {"0x0301": "TLSv1.0", "0x0302": "TLSv1.1", "0x0303": "TLSv1.2", "0x0304": "TLSv1.3"}


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", _quic_captures(), ids=lambda p: p.name)
def test_corpus_quic_handshakes_match_tshark(pcap: Path, corpus_dir: Path) -> None:
    truth = load_truth(pcap)
    flows = _udp_datagrams(pcap)
    wanted: Dict[Conv, List[Dict[str, Any]]] = defaultdict(list)
    for t in truth["tls"]:
        if t.get("transport") == "quic":
            wanted[_conv(t)].append(t)
    assert wanted
    for conv, records in wanted.items():
        events = _run_flow(flows[conv])
        assert events is not None, f"{sorted(conv)} not detected as QUIC"
        assert errors(events) == []
        got = handshakes(events)
        assert len(got) == len(records)
        for t, o in zip(records, got):
            want = (
                t["sni"],
                list(t["alpn_offered"] or []),
                t["ja3"],
                t["ja3_full"],
                t["ja3s"],
                t["ja4"],
                TLS_NAMES.get(t["negotiated_version"]) if t["negotiated_version"] else None,
                t["client_version"],
                t["client_supported_versions"],
                bool(t["hello_retry_request"]),
            )
            mine = (
                o.server_name,
                list(o.alpn_offered),
                o.ja3,
                o.ja3_string,
                o.ja3s,
                o.ja4,
                o.version,
                o.client_version,
                list(o.client_supported_versions),
                o.hello_retry_request,
            )
            assert mine == want
            assert o.ja3s_string == t["ja3s_full"]
            assert (o.cipher is None) == (t["cipher_suite"] is None)


@pytest.mark.corpus
def test_corpus_no_false_quic(corpus_dir: Path) -> None:
    """Across every capture, only flows that tshark calls QUIC are detected, and none errs."""
    captures = corpus_pcaps()
    assert captures
    for pcap in captures:
        truth = load_truth(pcap)
        quic_convs = {_conv(t) for t in truth.get("tls", []) if t.get("transport") == "quic"}
        for conv, datagrams in _udp_datagrams(pcap).items():
            events = _run_flow(datagrams)
            if events is None:
                assert conv not in quic_convs, f"{pcap.name}: {sorted(conv)} missed"
                continue
            assert conv in quic_convs, f"{pcap.name}: {sorted(conv)} detected as QUIC"
            assert errors(events) == [], pcap.name


@pytest.mark.corpus
def test_shuffled_corpus_datagrams_never_raise(corpus_dir: Path) -> None:
    """Real Initials fed out of order, duplicated and truncated: events, never exceptions."""
    rng = random.Random(9001)
    for pcap in _quic_captures():
        for datagrams in _udp_datagrams(pcap).values():
            payloads = [p for _, p in datagrams] * 2
            rng.shuffle(payloads)
            parser = QuicParser()
            for k, payload in enumerate(payloads):
                parser.datagram(rng.choice((ORIG, RESP)), payload[: rng.randint(1, len(payload))], k)
            parser.close(len(payloads))


# --------------------------------------------------------------------------- key log: Handshake packets

RFC_CLIENT_RANDOM = bytes.fromhex("ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c")
"""The random of the RFC 9001 A.2 ClientHello, read off the RFC bytes."""

# RFC 9001 A.5: ChaCha20-Poly1305 short header packet.
A5_SECRET = bytes.fromhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b")
A5_PACKET = bytes.fromhex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb")
A5_SAMPLE = bytes.fromhex("5e5cd55c41f69080575d7999c25a5bfb")
A5_MASK = bytes.fromhex("aefefe7d03")

# RFC 9001 A.1 / RFC 9369 A.1: the server Initial secrets.
V1_SERVER_INITIAL_SECRET = bytes.fromhex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
V2_SERVER_INITIAL_SECRET = bytes.fromhex("0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1")

SUITES: Dict[int, Tuple[hashes.HashAlgorithm, int, str]] = {
    0x1301: (hashes.SHA256(), 16, "gcm"),
    0x1302: (hashes.SHA384(), 32, "gcm"),
    0x1303: (hashes.SHA256(), 32, "chacha"),
    0x1304: (hashes.SHA256(), 16, "ccm"),
}


def expand_label(secret: bytes, label: bytes, length: int, algorithm: hashes.HashAlgorithm) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label with an empty context, by cryptography's HKDFExpand."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


def header_mask(kind: str, hp: bytes, sample: bytes) -> bytes:
    """RFC 9001 §5.4.3 (AES) and §5.4.4 (ChaCha20: counter = sample[0:4] LE, nonce = sample[4:16])."""
    if kind == "chacha":
        return Cipher(algorithms.ChaCha20(hp, sample), None).encryptor().update(bytes(5))
    return Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)[:5]


def seal(
    payload: bytes,
    *,
    secret: bytes,
    suite: int = 0x1301,
    version: int = V1,
    type_bits: Optional[int] = None,
    token: Optional[bytes] = None,
    dcid: bytes = b"",
    scid: bytes = SERVER_CID,
    pn: int = 0,
    pn_len: int = 2,
) -> bytes:
    """A long-header packet protected with the keys of a TLS ``secret``; a Handshake packet by default.

    ``token`` (Initial packets only) adds the Token Length field.
    """
    algorithm, key_len, kind = SUITES[suite]
    prefix = b"quicv2 " if version == V2 else b"quic "
    key = expand_label(secret, prefix + b"key", key_len, algorithm)
    iv = expand_label(secret, prefix + b"iv", 12, algorithm)
    hp = expand_label(secret, prefix + b"hp", key_len, algorithm)
    if type_bits is None:
        type_bits = 3 if version == V2 else 2  # Handshake (RFC 9000 §17.2.4, RFC 9369 §3.2)
    first = 0xC0 | (type_bits << 4) | (pn_len - 1)
    length = pn_len + len(payload) + 16
    header = (
        bytes((first,))
        + version.to_bytes(4, "big")
        + bytes((len(dcid),))
        + dcid
        + bytes((len(scid),))
        + scid
        + (b"" if token is None else varint(len(token)) + token)
        + (0x4000 | length).to_bytes(2, "big")
        + (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    )
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    aead: Any = {"gcm": AESGCM, "chacha": ChaCha20Poly1305, "ccm": AESCCM}[kind](key)
    sealed: bytes = aead.encrypt(nonce, payload, header)
    mask = header_mask(kind, hp, sealed[4 - pn_len : 20 - pn_len])
    protected = bytearray(header)
    protected[0] ^= mask[0] & 0x0F
    for k in range(pn_len):
        protected[len(header) - pn_len + k] ^= mask[1 + k]
    return bytes(protected) + sealed


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_chain() -> Tuple[bytes, bytes]:
    """A leaf (CN quic.test, SAN quic.test + www.quic.test) signed by a CA (CN Flowscope Test CA)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(days=365)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Flowscope Test CA"))
        .issuer_name(_name("Flowscope Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("quic.test"))
        .issuer_name(_name("Flowscope Test CA"))
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("quic.test"), x509.DNSName("www.quic.test")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    der = serialization.Encoding.DER
    return leaf.public_bytes(der), ca.public_bytes(der)


LEAF_DER, CA_DER = _make_chain()
EXPECTED_CERT = ("quic.test", "Flowscope Test CA", ("quic.test", "www.quic.test"))


def message(htype: int, body: bytes) -> bytes:
    """A TLS handshake message: type, 3-byte length, body."""
    return bytes((htype,)) + len(body).to_bytes(3, "big") + body


def encrypted_extensions(alpn: bytes = b"h3") -> bytes:
    """EncryptedExtensions holding ALPN (RFC 7301) and an unrelated extension before it."""
    names = bytes((len(alpn),)) + alpn
    alpn_ext = b"\x00\x10" + (len(names) + 2).to_bytes(2, "big") + len(names).to_bytes(2, "big") + names
    exts = b"\x00\x39\x00\x02\x01\x00" + alpn_ext  # quic_transport_parameters first
    return message(8, len(exts).to_bytes(2, "big") + exts)


def certificate(*ders: bytes) -> bytes:
    """A TLS 1.3 Certificate message (RFC 8446 §4.4.2): empty context, entries with empty extensions."""
    entries = b"".join(len(d).to_bytes(3, "big") + d + b"\x00\x00" for d in ders)
    return message(11, b"\x00" + len(entries).to_bytes(3, "big") + entries)


CERTIFICATE_VERIFY = message(15, b"\x04\x03\x00\x04sig!")
FINISHED = message(20, bytes(32))
SERVER_FLIGHT = encrypted_extensions() + certificate(LEAF_DER, CA_DER) + CERTIFICATE_VERIFY + FINISHED
HS_SECRET_32 = hashlib.sha256(b"server handshake traffic secret").digest()
HS_SECRET_48 = hashlib.sha384(b"server handshake traffic secret").digest()
ONE_RTT = b"\x40" + bytes(30)


def keylog_with(secret: bytes, client_random: bytes = RFC_CLIENT_RANDOM) -> KeyLog:
    log = KeyLog()
    log.add_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {client_random.hex()} {secret.hex()}\n")
    return log


def client_initial(version: int = V1) -> bytes:
    return protect(padded(crypto(0, RFC_CLIENT_HELLO)), version=version, pn=0)


def server_initial(suite: int = 0x1301, version: int = V1) -> bytes:
    return protect(
        b"\x02\x00\x00\x00\x00" + crypto(0, server_hello(cipher=suite)),
        version=version,
        dcid=b"",
        scid=SERVER_CID,
        from_server=True,
        pn=0,
    )


def keylog_flow(
    suite: int = 0x1301, version: int = V1, secret: bytes = HS_SECRET_32, flight: bytes = SERVER_FLIGHT
) -> List[Tuple[Direction, bytes]]:
    """Client Initial; server Initial + Handshake packet coalesced; the client's first 1-RTT packet."""
    handshake = seal(crypto(0, flight), secret=secret, suite=suite, version=version)
    return [(ORIG, client_initial(version)), (RESP, server_initial(suite, version) + handshake), (ORIG, ONE_RTT)]


def cert_of(record: QuicHandshake) -> Tuple[Optional[str], Optional[str], Tuple[str, ...]]:
    return record.cert_subject_cn, record.cert_issuer_cn, record.cert_san_dns


def test_the_rfc_client_random() -> None:
    assert RFC_CLIENT_HELLO[:1] == b"\x01" and RFC_CLIENT_HELLO[6:38] == RFC_CLIENT_RANDOM


def test_traffic_keys_rfc9001_chacha20_vector() -> None:
    keys = traffic_keys(A5_SECRET, 0x1303)
    assert keys.key.hex() == "c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8"
    assert keys.iv.hex() == "e0459b3474bdd0e44a41c144"
    assert keys.hp.hex() == "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"
    assert keys.secret == A5_SECRET


def test_traffic_keys_reproduce_the_initial_keys() -> None:
    """AES-128-GCM keys from the RFC server Initial secrets equal the RFC's (v1 and v2 labels)."""
    for version, secret in ((V1, V1_SERVER_INITIAL_SECRET), (V2, V2_SERVER_INITIAL_SECRET)):
        assert traffic_keys(secret, 0x1301, version) == initial_keys(version, DCID)[1]


def test_traffic_keys_reject_unusable_suites_and_versions() -> None:
    with pytest.raises(ValueError):
        traffic_keys(A5_SECRET, 0x1305)  # TLS_AES_128_CCM_8_SHA256: barred from QUIC
    with pytest.raises(ValueError):
        traffic_keys(A5_SECRET, 0x1301, 0x51303436)


def test_chacha20_packet_protection_rfc9001_a5() -> None:
    """The parser's ChaCha20 opener on the RFC short-header sample (its header bits match a long header's)."""
    assert header_mask("chacha", traffic_keys(A5_SECRET, 0x1303).hp, A5_SAMPLE) == A5_MASK
    opener = quic._Opener.for_suite(traffic_keys(A5_SECRET, 0x1303), quic._SUITES[0x1303])
    assert opener.mask(A5_SAMPLE)[:5] == A5_MASK
    assert quic._open(opener, memoryview(A5_PACKET), 0, 1, len(A5_PACKET), 654_360_563) == (654_360_564, b"\x01")


def test_test_sealer_reproduces_the_rfc_server_packets() -> None:
    """The test-only Handshake sealer, given Initial secrets and type bits, yields the RFC bytes exactly."""
    common: Dict[str, Any] = {"dcid": b"", "scid": SERVER_CID, "pn": 1, "pn_len": 2, "token": b""}
    v1 = seal(RFC_SERVER_PAYLOAD, secret=V1_SERVER_INITIAL_SECRET, type_bits=0, **common)
    v2 = seal(RFC_SERVER_PAYLOAD, secret=V2_SERVER_INITIAL_SECRET, version=V2, type_bits=1, **common)
    assert (v1, v2) == (RFC9001_SERVER_PACKET, RFC9369_SERVER_PACKET)


@pytest.mark.parametrize(
    ("suite", "version", "secret"),
    [
        (0x1301, V1, HS_SECRET_32),
        (0x1301, V2, HS_SECRET_32),
        (0x1302, V1, HS_SECRET_48),
        (0x1302, V2, HS_SECRET_48),
        (0x1303, V1, HS_SECRET_32),
        (0x1303, V2, HS_SECRET_32),
        (0x1304, V1, HS_SECRET_32),
    ],
    ids=["aes128-v1", "aes128-v2", "aes256-v1", "aes256-v2", "chacha-v1", "chacha-v2", "ccm-v1"],
)
def test_key_log_opens_the_certificate(suite: int, version: int, secret: bytes) -> None:
    events = run(QuicParser(keylog=keylog_with(secret)), keylog_flow(suite, version, secret))
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000  # with the server datagram that carried the Certificate
    assert cert_of(record) == EXPECTED_CERT
    assert record.alpn_selected == "h3"
    assert record.server_name == "example.com" and record.ja3_string == RFC_JA3_STRING
    assert record.quic_version == ("2" if version == V2 else "1")


def test_without_a_usable_key_log_the_record_is_unchanged() -> None:
    """No key log, an empty one, or one for another connection: the record of the Initial packets only."""
    datagrams = keylog_flow()
    baseline = run(QuicParser(), datagrams)
    [record] = handshakes(baseline)
    assert record.ts == 1_002_000_000 and cert_of(record) == (None, None, ()) and record.alpn_selected is None
    for log in (KeyLog(), keylog_with(HS_SECRET_32, client_random=bytes(32))):
        assert run(QuicParser(keylog=log), datagrams) == baseline
    with_log = handshakes(run(QuicParser(keylog=keylog_with(HS_SECRET_32)), datagrams))[0]
    stripped = dataclasses.replace(with_log, cert_subject_cn=None, cert_issuer_cn=None, cert_san_dns=())
    assert dataclasses.replace(stripped, alpn_selected=None) == record


def test_wrong_secret_gives_no_certificate_and_no_error() -> None:
    events = run(QuicParser(keylog=keylog_with(HS_SECRET_48[:32])), keylog_flow())
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000  # released by the first Handshake packet that fails
    assert cert_of(record) == (None, None, ()) and record.alpn_selected is None


def test_certificate_split_across_packets_and_out_of_order() -> None:
    flight = SERVER_FLIGHT
    cut = len(flight) // 2
    first = seal(crypto(0, flight[:cut]), secret=HS_SECRET_32, pn=0)
    second = seal(crypto(cut, flight[cut:]), secret=HS_SECRET_32, pn=1)
    garbage = b"\xe0" + V1.to_bytes(4, "big") + b"\x00\x08" + SERVER_CID + varint(40) + bytes(40)  # fails to open
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    datagrams = [(ORIG, client_initial()), (RESP, server_initial() + second), (RESP, garbage), (RESP, first)]
    events = run(parser, datagrams)
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_004_000_000  # completed by the fourth datagram
    assert cert_of(record) == EXPECTED_CERT


def test_record_released_by_the_clients_first_1rtt_packet() -> None:
    """The server's Handshake packets were not captured: the client's 1-RTT packet releases the record."""
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    assert parser.datagram(ORIG, client_initial(), 1) == []
    assert parser.datagram(RESP, server_initial(), 2) == []  # held for the certificate
    assert list(parser.datagram(RESP, ONE_RTT, 3)) == []  # the server's 1-RTT says nothing
    [record] = handshakes(parser.datagram(ORIG, ONE_RTT, 4))
    assert record.ts == 2 and cert_of(record) == (None, None, ())
    assert parser.close(5) == []
    # A client 1-RTT packet coalesced behind a client Handshake packet does the same.
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    parser.datagram(ORIG, client_initial(), 1)
    parser.datagram(RESP, server_initial(), 2)
    client_handshake = b"\xe0" + V1.to_bytes(4, "big") + b"\x08" + SERVER_CID + b"\x00" + varint(30) + bytes(30)
    assert len(handshakes(parser.datagram(ORIG, client_handshake + ONE_RTT, 3))) == 1


def test_held_record_is_written_at_close() -> None:
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    parser.datagram(ORIG, client_initial(), 1)
    assert parser.datagram(RESP, server_initial(), 2) == []
    [record] = handshakes(parser.close(3))
    assert record.ts == 2 and record.version == "TLSv1.3"


def test_finished_without_certificate_releases_the_record() -> None:
    """A PSK handshake: EncryptedExtensions then Finished."""
    flight = encrypted_extensions(b"h3-29") + FINISHED
    events = run(QuicParser(keylog=keylog_with(HS_SECRET_32)), keylog_flow(flight=flight))
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000 and record.alpn_selected == "h3-29" and cert_of(record) == (None, None, ())


NO_CERT: Tuple[Optional[str], Optional[str], Tuple[str, ...]] = (None, None, ())


@pytest.mark.parametrize(
    ("flight", "alpn", "cert"),
    [
        (encrypted_extensions() + message(11, b"\x00\x00\x00\x09\x00\x00\x05abc") + FINISHED, "h3", NO_CERT),
        (encrypted_extensions() + certificate() + FINISHED, "h3", NO_CERT),
        (encrypted_extensions() + certificate(b"not DER at all") + FINISHED, "h3", NO_CERT),
        (
            encrypted_extensions() + message(25, b"\x00\x02\x00\x10\x00" + bytes(16)) + CERTIFICATE_VERIFY + FINISHED,
            "h3",
            NO_CERT,
        ),
        (message(8, b"\x00\x09\x00\x10\x00\x05\x00\x03h3") + certificate(LEAF_DER) + FINISHED, None, EXPECTED_CERT),
        (message(8, b"\x00\x00") + certificate(LEAF_DER) + FINISHED, None, EXPECTED_CERT),
    ],
    ids=["cert-lengths", "empty-chain", "not-der", "compressed-certificate", "bad-extensions", "no-alpn"],
)
def test_odd_server_flights_give_a_record_without_the_missing_parts(
    flight: bytes, alpn: Optional[str], cert: Tuple[Optional[str], Optional[str], Tuple[str, ...]]
) -> None:
    events = run(QuicParser(keylog=keylog_with(HS_SECRET_32)), keylog_flow(flight=flight))
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000 and record.server_name == "example.com"
    assert (record.alpn_selected, cert_of(record)) == (alpn, cert)


def test_cipher_missing_from_the_crypto_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without ChaCha20 (FIPS): no certificate, no exception."""

    def unsupported(keys: Any, suite: Any) -> Any:
        raise UnsupportedAlgorithm("ChaCha20 is not available")

    monkeypatch.setattr(quic._Opener, "for_suite", unsupported)
    events = run(QuicParser(keylog=keylog_with(HS_SECRET_32)), keylog_flow(suite=0x1303))
    assert errors(events) == []
    [record] = handshakes(events)
    assert record.ts == 1_002_000_000 and cert_of(record) == (None, None, ())


def test_handshake_packet_limit() -> None:
    cut = 100
    first = seal(crypto(0, SERVER_FLIGHT[:cut]), secret=HS_SECRET_32, pn=0)
    second = seal(crypto(cut, SERVER_FLIGHT[cut:]), secret=HS_SECRET_32, pn=1)
    parser = QuicParser(QuicConfig(max_handshake_packets=1), keylog=keylog_with(HS_SECRET_32))
    assert list(parser.datagram(ORIG, client_initial(), 1)) == []
    assert list(parser.datagram(RESP, server_initial() + first, 2)) == []
    [record] = parser.datagram(RESP, second, 3)  # over the limit: released without the certificate
    assert isinstance(record, QuicHandshake)
    assert record.ts == 2  # the time of the last message it holds (the ServerHello)
    assert cert_of(record) == (None, None, ()) and record.alpn_selected == "h3"
    assert parser.close(4) == []


def test_malformed_handshake_payload_writes_the_record_then_the_error() -> None:
    stream_frame = b"\x08\x00\x01x"  # STREAM is not allowed in Handshake packets
    handshake = seal(stream_frame + bytes(20), secret=HS_SECRET_32)
    datagrams = [(ORIG, client_initial()), (RESP, server_initial() + handshake)]
    events = run(QuicParser(keylog=keylog_with(HS_SECRET_32)), datagrams)
    assert [type(e) for e in events] == [QuicHandshake, QuicError]
    assert errors(events)[0].reason == "malformed_frame"


def test_handshake_crypto_bound() -> None:
    config = QuicConfig(max_handshake_crypto_bytes=512)
    events = run(QuicParser(config, keylog=keylog_with(HS_SECRET_32)), keylog_flow())
    assert [type(e) for e in events] == [QuicHandshake, QuicError]
    assert errors(events)[0].reason == "crypto_limit"
    assert cert_of(handshakes(events)[0]) == (None, None, ())


def test_factory_keylog_attribute() -> None:
    made = QuicParserFactory()
    assert made.keylog is None
    without = made.create_datagram(FLOW)
    log = KeyLog()
    made.keylog = log
    later = made.create_datagram(FLOW)
    # The key log is shared: a secret added after the parser was made (a DSB read later) is used.
    log.add_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {RFC_CLIENT_RANDOM.hex()} {HS_SECRET_32.hex()}")
    assert isinstance(without, QuicParser) and isinstance(later, QuicParser)
    assert cert_of(handshakes(run(later, keylog_flow()))[0]) == EXPECTED_CERT
    assert cert_of(handshakes(run(without, keylog_flow()))[0]) == (None, None, ())
    assert QuicParserFactory(keylog=log).keylog is log


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5), st.sampled_from([V1, V2]))
def test_garbage_handshake_packets_never_raise(tails: List[bytes], version: int) -> None:
    """Bytes behind a Handshake long header, while a record waits: one record, at most one error."""
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    events = list(parser.datagram(ORIG, client_initial(version), 1))
    events += parser.datagram(RESP, server_initial(version=version), 2)
    first = 0xF0 if version == V2 else 0xE0
    for k, tail in enumerate(tails):
        events += parser.datagram(RESP, bytes((first,)) + version.to_bytes(4, "big") + tail, 3 + k)
    events += parser.close(10)
    assert len(handshakes(events)) == 1 and len(errors(events)) <= 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(crypto, st.integers(0, 70000), st.binary(max_size=300)),
            st.sampled_from([crypto(0, SERVER_FLIGHT[:50]), crypto(0, SERVER_FLIGHT[:700]), crypto(0, FINISHED)]),
            st.sampled_from([b"\x00" * 5, b"\x01", b"\x02\x05\x00\x01\x00\x00\x01", b"\x1c\x0a\x06\x02hi"]),
        ),
        max_size=6,
    )
)
def test_random_frames_behind_valid_handshake_encryption_never_raise(frames: List[bytes]) -> None:
    payload = b"".join(frames) + bytes(20)
    parser = QuicParser(keylog=keylog_with(HS_SECRET_32))
    events = list(parser.datagram(ORIG, client_initial(), 1))
    events += parser.datagram(RESP, server_initial() + seal(payload, secret=HS_SECRET_32), 2)
    events += parser.close(3)
    assert len(handshakes(events)) == 1 and len(errors(events)) <= 1


def _keylog_of(pcap: Path) -> KeyLog:
    """The TLS key log text of a capture's Decryption Secrets Blocks (empty without any)."""
    log = KeyLog()

    def on_secrets(kind: int, data: bytes) -> None:
        if kind == 0x544C534B:  # "TLSK"
            log.add_text(data)

    with open_capture(pcap) as reader:
        reader.on_secrets = on_secrets
        for _ in reader:
            pass
    return log


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", _quic_captures(), ids=lambda p: p.name)
def test_corpus_certificates_with_embedded_secrets_match_tshark(pcap: Path, corpus_dir: Path) -> None:
    """Each QUIC handshake's certificate as tshark saw it with the capture's own secrets (none: no certificate)."""
    keylog = _keylog_of(pcap)
    flows = _udp_datagrams(pcap)
    wanted: Dict[Conv, List[Dict[str, Any]]] = defaultdict(list)
    for t in load_truth(pcap)["tls"]:
        if t.get("transport") == "quic":
            wanted[_conv(t)].append(t)
    for conv, records in wanted.items():
        events = _run_flow(flows[conv], keylog)
        assert events is not None and errors(events) == []
        got = handshakes(events)
        assert len(got) == len(records)
        for t, o in zip(records, got):
            first = t["certificates"][0] if t["certificates"] else {}
            want = (first.get("subject_cn"), first.get("issuer_cn"), tuple(first.get("san_dns") or ()))
            assert cert_of(o) == want
            assert o.cert_subject_cn == t["server_cert_subject_cn"]


@pytest.mark.corpus
def test_corpus_quic_v2_with_and_without_its_secrets(corpus_dir: Path) -> None:
    pcap = corpus_dir / "ndpi_quic-v2.pcapng"
    [datagrams] = _udp_datagrams(pcap).values()
    keylog = _keylog_of(pcap)
    assert len(keylog) == 64
    with_log = _run_flow(datagrams, keylog)
    without = _run_flow(datagrams)
    assert with_log is not None and without is not None
    [record] = handshakes(with_log)
    assert cert_of(record) == ("test.example.com", "picotls test ca", ())
    # tshark, decrypting with the same secrets, shows ALPN "h3" in the server's EncryptedExtensions.
    assert record.alpn_selected == "h3"
    assert handshakes(without) == [
        dataclasses.replace(record, cert_subject_cn=None, cert_issuer_cn=None, cert_san_dns=(), alpn_selected=None)
    ]
