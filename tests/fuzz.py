"""Fuzzing a live proxy: mutated PDUs into `smppguard run`, counting crashes and hung sessions.

    scripts/fuzz [--cases 100000] [--seed 1] [--connections 4]

The corpus is real PDUs as other implementations write them: Kannel's, captured through the proxy
(tests/fuzz_corpus_kannel.txt: its bind, submit_sm with a DLR request, in UCS2, in concatenated parts),
smpplib's (submit_sm plain, UCS2 and with a UDH, query_sm, data_sm, enquire_link, unbind, generic_nack,
deliver_sm_resp) and smppguard's own codec's (cancel_sm, replace_sm, data_sm with SAR TLVs, submit_multi with a
distribution list, a second bind).
Each case is one of them mutated (bits flipped, bytes inserted, cut or spliced, command_length or command_id
changed, TLVs garbled, C-strings left without their NUL), sent on a bound connection, followed by an
enquire_link. The case passes when that enquire_link is answered
(the proxy read the bad PDU, answered or relayed it, and went on) or the proxy closes the connection (a framing
error it cannot resynchronise from); it is a hung session when neither happens within 5 s. A case that claims more
bytes than it has is followed by filler up to its command_length (or the connection is given up when the claim is
past what any PDU may be), so a proxy correctly waiting for the rest of a PDU is not taken for a hung one.

At the end the proxy must still be running and accept a bind. The figures: cases, answered, closed, hung, the
proxy's exit status (none), and its memory before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = struct.Struct(">IIII")
ENQUIRE_LINK, ENQUIRE_LINK_RESP, BIND_TRANSCEIVER = 0x15, 0x80000015, 0x09
MARKER_BASE = 0x7F000000  # sequence numbers of the enquire_links that end each case
CASE_TIMEOUT_S = 5.0
MAX_CLAIM = 72 * 1024  # smpp/framing.py MAX_PDU_LEN: a command_length past it is refused (and the link closed)


def corpus() -> list[bytes]:
    """Real PDUs: smpplib's and smppguard's codec's."""
    import smpplib.smpp

    from smppguard.smpp.commands import CommandId
    from smppguard.smpp.concat import build_udh
    from smppguard.smpp.fields import DistributionList, SmeDest, Tlv, TlvTag, encode_body
    from smppguard.smpp.pdu import build

    class _Client:  # what smpplib's make_pdu asks of a client: the next sequence number
        sequence = 0

        def next_sequence(self) -> int:
            self.sequence += 1
            return self.sequence

    client = _Client()
    kannel = Path(__file__).with_name("fuzz_corpus_kannel.txt").read_text().splitlines()
    out = [bytes.fromhex(line) for line in kannel if line and not line.startswith("#")]

    def lib(name: str, **kw) -> None:
        pdu = smpplib.smpp.make_pdu(name, client=client, **kw)
        out.append(pdu.generate())

    lib("submit_sm", source_addr="ACME", destination_addr="8613800138000", short_message=b"Spring sale",
        dest_addr_ton=1, registered_delivery=1)
    lib("submit_sm", source_addr="10690000", destination_addr="13800138000",
        short_message="新品上市 回T退订".encode("utf-16-be"), data_coding=8)
    lib("submit_sm", source_addr="ACME", destination_addr="8613800138001", esm_class=0x40,
        short_message=build_udh(7, 2, 1) + b"first part of two")
    lib("query_sm", message_id="00000001", source_addr="ACME")
    lib("data_sm", source_addr="ACME", destination_addr="8613800138004", message_payload=b"data_sm payload")
    lib("enquire_link")
    lib("unbind")
    lib("generic_nack")
    lib("deliver_sm_resp")
    out.append(build(CommandId.CANCEL_SM, 12, encode_body(CommandId.CANCEL_SM, message_id="00000001",
                                                          source_addr="ACME", destination_addr="8613800138000")))
    out.append(build(CommandId.REPLACE_SM, 13, encode_body(CommandId.REPLACE_SM, message_id="00000001",
                                                           source_addr="ACME", short_message=b"replacement")))
    out.append(build(CommandId.DATA_SM, 9, encode_body(
        CommandId.DATA_SM, source_addr="ACME", destination_addr="8613800138002",
        tlvs=[Tlv(TlvTag.MESSAGE_PAYLOAD, b"payload text"), Tlv(TlvTag.SAR_MSG_REF_NUM, b"\x00\x07")])))
    out.append(build(CommandId.SUBMIT_MULTI, 10, encode_body(
        CommandId.SUBMIT_MULTI, source_addr="ACME",
        dest_addresses=[SmeDest(1, 1, "8613800138003"), DistributionList("friends")], short_message=b"multi")))
    out.append(build(CommandId.BIND_TRANSCEIVER, 11, encode_body(CommandId.BIND_TRANSCEIVER, system_id="again",
                                                                 password="pw")))
    return out


def mutate(rng: random.Random, pdu: bytes) -> bytes:
    data = bytearray(pdu)
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(9)
        if how == 0 and len(data) > 16:  # flip bits in the body
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(16, len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif how == 1:  # insert random bytes
            i = rng.randrange(16, len(data) + 1)
            data[i:i] = rng.randbytes(rng.randint(1, 40))
        elif how == 2 and len(data) > 17:  # cut the body short
            del data[rng.randrange(16, len(data)):]
        elif how == 3:  # another command_id: known, response, or unknown
            command_id = rng.choice([0x04, 0x103, 0x21, 0x03, 0x08, 0x0D, 0x06, 0x15, 0x80000004, 0x80000005,
                                     0x02, 0x0B, 0x102, 0x999, 0xFFFFFFFF, rng.getrandbits(32)])
            struct.pack_into(">I", data, 4, command_id)
        elif how == 4:  # a command_status on a request
            struct.pack_into(">I", data, 8, rng.getrandbits(32))
        elif how == 5 and b"\0" in data[16:]:  # a C-string without its NUL
            i = data.index(b"\0", 16)
            data[i] = 0x41
        elif how == 6:  # garbled TLV: tag, length past the end
            data += struct.pack(">HH", rng.getrandbits(16), rng.choice([0, 1, 2, 255, 65535])) + rng.randbytes(
                rng.randint(0, 4))
        elif how == 7 and len(data) > 20:  # splice: duplicate a stretch
            i, j = sorted(rng.sample(range(16, len(data)), 2))
            data[j:j] = data[i:j]
        elif how == 8:  # a short_message length byte (or any byte) set to its most
            if len(data) > 16:
                data[rng.randrange(16, len(data))] = 0xFF
    if rng.random() < 0.85:
        struct.pack_into(">I", data, 0, len(data))  # most cases keep the framing whole
    else:
        struct.pack_into(">I", data, 0, rng.choice([0, 1, 15, 16, len(data) - 1, len(data) + 7, 70_000,
                                                    0xFFFFFFFF, rng.getrandbits(32)]))
    return bytes(data)


def framed(data: bytes) -> bytes:
    """`data` and the filler that ends it on a PDU boundary, as the proxy frames the stream: a PDU (or bytes left
    after one, read as the next) that claims more than it has gets the rest, so the enquire_link after it is read
    as one. A command_length the proxy refuses ends the framing: it closes there."""
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if len(out) - pos < 16:
            out += b"\0" * (16 - (len(out) - pos))  # a header cut short: completed (length 0 is refused)
        claimed = struct.unpack_from(">I", out, pos)[0]
        if claimed < 16 or claimed > MAX_CLAIM:
            return bytes(out)  # refused: the proxy closes the connection here
        if pos + claimed > len(out):
            out += b"\0" * (pos + claimed - len(out))
        pos += claimed
    return bytes(out)


class _Connection:
    def __init__(self, address: tuple[str, int], n: int):
        self.address = address
        self.n = n
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        from smppguard.smpp.fields import encode_body
        from smppguard.smpp.pdu import build

        self.reader, self.writer = await asyncio.open_connection(*self.address)
        self.writer.write(build(BIND_TRANSCEIVER, 1, encode_body(BIND_TRANSCEIVER, system_id=f"fuzz{self.n}",
                                                                 password="pw")))
        while True:
            command_id, status, _seq = await self._read()
            if command_id == BIND_TRANSCEIVER | 0x80000000:
                if status:
                    raise RuntimeError(f"the proxy refused the fuzzer's bind with 0x{status:08X}")
                return

    async def _read(self) -> tuple[int, int, int]:
        assert self.reader is not None
        length, command_id, status, seq = HEADER.unpack(await self.reader.readexactly(16))
        await self.reader.readexactly(max(0, length - 16))
        if command_id == ENQUIRE_LINK:  # the proxy's own keep-alive
            assert self.writer is not None
            self.writer.write(HEADER.pack(16, ENQUIRE_LINK_RESP, 0, seq))
        elif command_id in (0x05, 0x103):  # a deliver_sm or data_sm (a receipt): answer it
            assert self.writer is not None
            self.writer.write(HEADER.pack(17, command_id | 0x80000000, 0, seq) + b"\0")
        return command_id, status, seq

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def case(self, data: bytes, marker: int) -> str:
        """Send one case and the enquire_link that ends it: "answered", "closed" or "hung"."""
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        self.writer.write(framed(data))
        self.writer.write(HEADER.pack(16, ENQUIRE_LINK, 0, marker))
        try:
            async with asyncio.timeout(CASE_TIMEOUT_S):
                while True:
                    command_id, _status, seq = await self._read()
                    if command_id == ENQUIRE_LINK_RESP and seq == marker:
                        return "answered"
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            return "closed"
        except TimeoutError:
            self.close()
            return "hung"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_proxy(tmp: Path) -> tuple[subprocess.Popen, tuple[str, int]]:
    from helpers import start_daemon

    with open(tmp / "proxy.log", "w") as log:
        return start_daemon(tmp, f'max_binds_per_account = 0\n\n[simulator]\ncontrol = ""\n\n'
                                 f'[store]\npath = "{tmp / "guard.db"}"\n\n[policy]\ndefault_region = "CN"\n\n'
                                 '[log]\nlevel = "warning"\n', stderr=log)


async def _fuzz(address: tuple[str, int], cases: int, seed: int, connections: int) -> dict[str, int]:
    base = corpus()
    counts = {"answered": 0, "closed": 0, "hung": 0}

    async def worker(n: int, share: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = _Connection(address, n)
        try:
            for i in range(share):
                outcome = await conn.case(mutate(rng, rng.choice(base)), MARKER_BASE + (i % 0xFFFFFF))
                counts[outcome] += 1
        finally:
            conn.close()

    shares = [cases // connections + (1 if n < cases % connections else 0) for n in range(connections)]
    await asyncio.gather(*(worker(n, share) for n, share in enumerate(shares)))
    # and the proxy still takes a bind and answers an enquire_link
    check = _Connection(address, 999)
    await check.open()
    assert await check.case(HEADER.pack(16, ENQUIRE_LINK, 0, 2), MARKER_BASE - 1) == "answered"
    check.close()
    return counts


def run(cases: int = 100_000, seed: int = 1, connections: int = 4) -> dict:
    with tempfile.TemporaryDirectory(prefix="smppguard-fuzz-") as tmp:
        proxy, address = start_proxy(Path(tmp))
        try:
            before = _rss_mb(proxy.pid)
            started = time.monotonic()
            counts = asyncio.run(_fuzz(address, cases, seed, connections))
            seconds = time.monotonic() - started
            after = _rss_mb(proxy.pid)
            exited = proxy.poll()
        finally:
            if proxy.poll() is None:
                proxy.send_signal(signal.SIGTERM)
                try:
                    proxy.wait(10)
                except subprocess.TimeoutExpired:
                    proxy.kill()
                    proxy.wait()
            log = (Path(tmp) / "proxy.log").read_text(errors="replace")
    return {"cases": cases, "seed": seed, "connections": connections, "seconds": round(seconds, 1), **counts,
            "proxy_exited": exited, "proxy_rss_mb_before": round(before), "proxy_rss_mb_after": round(after),
            "tracebacks_in_log": log.count("Traceback"), "stop_status": proxy.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description="Mutated PDUs into a live smppguard.")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    r = run(args.cases, args.seed, args.connections)
    print(json.dumps(r, indent=2))
    ok = r["hung"] == 0 and r["proxy_exited"] is None and r["tracebacks_in_log"] == 0 and r["stop_status"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.pop("SMPPGUARD_CONFIG", None)
    sys.exit(main())
